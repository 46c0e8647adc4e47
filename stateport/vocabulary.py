"""Token inventories shared by the built-in models, their training data and their cards (torch-free)."""

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
"""The spoken word of each digit 0..9 (index = digit)."""

BLANK_ID = 0
DIGIT_VOCABULARY = ("<blank>",) + DIGIT_WORDS
"""CTC vocabulary of the digit recognisers: blank first, then digit d has token id d + 1."""
