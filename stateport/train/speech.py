"""Speech that contains no digits: sentences from word lists, spoken by the synthesisers.

A digit recogniser in a product hears far more other speech than digits; the previous
built-in model turned a 60 s speech without a digit into 64 digits (issue 21). Training needs
such speech with an empty target, and the evaluation needs a separate set of it (false digits
per minute), so there are two word lists with no word in common: :data:`TRAIN_WORDS` for
training, :data:`EVAL_WORDS` for evaluation, spoken in disjoint voices as well.

Neither list holds a digit word, a word spelled with one inside ("someone", "weight"), a
homophone of one ("to", "too", "for", "won", "ate", "oh") or a number word ("ten", "twenty",
"hundred"): a digit recogniser cannot tell "for" from "four" by sound, and a number word
contains digits. :func:`is_digit_free` is the rule; a test holds both lists to it.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ..errors import InvalidInputError
from .clips import DIGIT_WORDS
from .strings import Delivery, Voice, speak

DIGIT_HOMOPHONES = frozenset({"to", "too", "tu", "for", "fore", "won", "ate", "oh", "owe", "o", "nein", "naught",
                              "nought", "ought", "aught", "zero", "sicks", "sics", "fiver"})
NUMBER_WORDS = frozenset({"ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
                          "eighteen", "nineteen", "twenty", "thirty", "forty", "fifty", "sixty", "seventy",
                          "eighty", "ninety", "hundred", "thousand", "million", "billion", "dozen", "first",
                          "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
                          "once", "twice", "half", "double", "triple", "single", "pair", "couple"})


def is_digit_free(word: str) -> bool:
    """Whether ``word`` is neither a digit word, nor spelled with one inside, nor a homophone of
    one, nor a number word."""
    w = word.lower()
    return (w.isalpha() and w not in DIGIT_HOMOPHONES and w not in NUMBER_WORDS
            and not any(d in w for d in DIGIT_WORDS))


TRAIN_WORDS = tuple(dict.fromkeys("""
the a an and but or if when while because so then than that this these those there here where what who whom
which why how all any each every some many much more most few less least other another such same own only
just also very quite rather still even already yet again never always often sometimes soon later early late
now today tomorrow yesterday tonight morning evening afternoon night day week month year time moment hour
minute people person man woman child children family friend mother father brother sister son daughter
baby boy girl teacher doctor driver farmer worker student king queen world country city town village street
road house home room door window floor wall table chair bed kitchen garden tree flower grass river lake sea
ocean mountain hill forest field sky sun moon star rain snow wind cloud storm fire water air earth 
sand gold silver iron paper book letter story word name voice song music picture colour color red blue green
yellow black white brown grey dark light bright warm cold hot cool dry wet clean dirty soft hard heavy
small big large little long short tall high low deep wide narrow fast slow quick quiet loud happy sad angry
tired hungry busy free easy difficult simple strong weak rich poor young old new good bad better best worse
great true real whole full empty open closed near far left right front back inside outside above below
under over between through across around behind beside along against toward during after before about
with without within from into onto upon off out up down go goes going went  come came coming get got
give gave take took make made see saw look looked watch find found keep kept leave left let put set run ran
walk walked talk talked speak spoke say said tell told ask asked answer call called think thought know knew
believe feel felt hear heard listen play played work worked live lived move moved stand stood sit sat
sleep slept eat drink drank cook buy bought sell sold pay paid send sent bring brought carry carried
hold held turn turned start started stop stopped finish begin began end ended try tried help helped need
wanted like liked love loved hate hope wish wait waited stay stayed change changed follow followed learn
learned teach taught read write wrote draw drew sing sang dance swim fly flew drive drove ride rode climb
build built break broke fix cut fell fall grow grew show showed open closed close pull push throw caught
catch win lose lost remember forget forgot understand explain decide choose chose happen happened seem seemed
become became appear appeared allow agree promise offer travel visit return arrive arrived leave wonder
question problem reason idea plan place part side kind sort way thing things something nothing everything
anything anybody nobody everybody somewhere nowhere everywhere anywhere  price market shop store bank
office school college church hospital station airport hotel restaurant party meeting game sport team ball
dog cat horse cow bird fish chicken sheep pig mouse rabbit bear wolf lion tiger apple bread butter cheese
milk coffee tea sugar salt rice meat soup cake fruit egg dinner lunch breakfast supper meal plate cup glass
bottle bag box coat shirt shoes hat dress pocket key clock  computer picture camera car bus train ship
boat plane bicycle engine machine wheel
""".split()))
"""Words the training sentences are made of (common English, digit-free)."""

EVAL_WORDS = tuple(dict.fromkeys("""
weather summer winter autumn spring holiday journey adventure harbour island valley canyon desert jungle
meadow orchard  cottage castle palace bridge tunnel tower lighthouse museum library theatre
cinema gallery stadium bakery pharmacy factory warehouse garage basement attic balcony corridor staircase
elevator blanket pillow curtain carpet mirror lamp candle basket bucket ladder hammer shovel rope chain
needle thread button ribbon umbrella jacket sweater gloves scarf boots sandals wallet purse ticket passport
envelope package parcel message newspaper magazine novel poem chapter sentence paragraph language grammar
vocabulary history science chemistry biology physics geography medicine surgery nurse patient lawyer judge
police officer soldier captain pilot sailor merchant banker baker butcher painter singer actor writer poet
scientist engineer mechanic plumber carpenter gardener neighbour stranger visitor guest audience crowd
government parliament election candidate citizen freedom justice history culture tradition ceremony
wedding birthday funeral festival concert lecture seminar interview conversation argument discussion
decision opinion suggestion advice warning  secret surprise mystery danger accident emergency
disaster victory defeat success failure progress experience knowledge memory dream imagination courage
patience kindness  beauty silence darkness sunshine thunder lightning rainbow breeze shadow
reflection whisper laughter tears smile frown shout scream murmur giggle yawn sneeze cough shiver tremble
wander stroll hurry rush gather scatter borrow lend describe discover invent imagine consider compare
prepare organise arrange celebrate complain apologise encourage persuade recommend remind suggest
whisper quickly slowly quietly gently carefully suddenly finally probably certainly perhaps usually
rarely nearly hardly almost instead however although unless whether despite towards beneath beyond
elegant curious anxious brave clever foolish gentle  polite rude proud humble lazy eager calm
nervous famous strange ordinary precious valuable ancient modern delicious bitter sweet sour salty
spicy fresh rotten ripe raw smooth rough sharp blunt shiny dusty muddy frozen golden wooden plastic
purple orange violet scarlet crimson
""".split()))
"""Words the evaluation's sentences are made of (common English, digit-free, none in :data:`TRAIN_WORDS`)."""


def random_sentences(rng: np.random.Generator, words: Sequence[str], count: int,
                     length_range: tuple[int, int] = (4, 12)) -> list[str]:
    """``count`` strings of ``length_range`` random words each (word salad with real English words:
    the prosody of a sentence, none of its sense, no digits)."""
    words = list(words)
    lo, hi = length_range
    if not words or not 1 <= lo <= hi:
        raise InvalidInputError(f"random_sentences needs words and 1 <= low <= high, got {len(words)}, {length_range}")
    return [" ".join(words[int(i)] for i in rng.integers(len(words), size=int(rng.integers(lo, hi + 1))))
            for _ in range(count)]


def spoken_sentences(voices: Sequence, words: Sequence[str], count: int, *, seed: int = 0,
                     tempo_range: tuple[float, float] = (0.8, 1.6), pitch_range: tuple[int, int] = (25, 75),
                     cache_dir: str | os.PathLike | None = None) -> dict[str, list[np.ndarray]]:
    """``count`` sentences of ``words``, each by a voice drawn from ``voices`` at a drawn tempo and
    pitch: ``{speaker: [float32 [N] at 16 kHz, ...]}`` (trimmed, peak-normalised, cached)."""
    voices = [Voice.of(v) for v in voices]
    if not voices:
        raise InvalidInputError("spoken_sentences needs at least one voice")
    texts = random_sentences(np.random.default_rng([seed, 11]), words, count)
    out: dict[str, list[np.ndarray]] = {}
    for i, text in enumerate(texts):
        rng = np.random.default_rng([seed, 12, i])
        voice = voices[int(rng.integers(len(voices)))]
        delivery = Delivery(round(float(rng.uniform(*tempo_range)), 2),
                            int(rng.integers(pitch_range[0], pitch_range[1] + 1)))
        wave, _ = speak(voice, text, delivery, digit_words=False, cache_dir=cache_dir)
        out.setdefault(voice.speaker, []).append(wave)
    return out
