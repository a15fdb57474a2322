"""The demo's synthetic voice: digit words ("zero" ... "nine") spoken as audio, with no recordings.

[`speak_digits`] makes the audio of one `asr` example of [`multimodal_gpt.data.synthetic`]. Each digit of
[`DIGIT_PHONES`] is an onset consonant, two vowels and a coda consonant:

- **vowels** are harmonics of the voice's pitch weighted by the first three formant resonances, one pitch period
  tiled over the vowel and cross-faded into the next target over a short glide;
- **fricatives** ("s", "sh", "f") are white noise kept to a band, the stop "t" a closure and a decaying burst, and
  the nasal "n" a quiet hum with its own formants.

Each clip draws a voice (pitch 100-240 Hz, vocal-tract length scaling every formant and noise band by 0.9-1.12,
tempo), each word wobbles it a little, and the clip gets random pauses, background noise (20-35 dB SNR) and loudness.

```py
>>> from multimodal_gpt.synthetic_speech import speak_digits
>>> speak_digits(["three", "seven"], seed=0).dtype
dtype('float32')
```
"""

from typing import NamedTuple

import numpy as np

__all__ = ["DIGIT_PHONES", "speak_digits"]


# Each digit: (onset consonant, first vowel, second vowel, coda consonant), "" where there is none. Loosely after the
# English words ("six" = s-i-i-s), and any two digits differ in at least one strongly marked part.
DIGIT_PHONES: dict[str, tuple[str, str, str, str]] = {
    "zero": ("s", "i", "o", ""),
    "one": ("n", "u", "i", "n"),
    "two": ("t", "u", "u", ""),
    "three": ("sh", "e", "i", ""),
    "four": ("f", "a", "o", ""),
    "five": ("f", "a", "i", "f"),
    "six": ("s", "i", "i", "s"),
    "seven": ("s", "e", "a", "n"),
    "eight": ("", "e", "i", "t"),
    "nine": ("n", "a", "a", "n"),
}

# The first three formants (Hz) of an adult voice, and their relative heights in the spectral envelope.
_VOWEL_FORMANTS = {
    "i": (300.0, 2300.0, 3000.0),
    "e": (480.0, 1900.0, 2600.0),
    "a": (750.0, 1200.0, 2500.0),
    "o": (500.0, 850.0, 2400.0),
    "u": (320.0, 800.0, 2300.0),
}
_NASAL_FORMANTS = (250.0, 1000.0, 2200.0)
_FORMANT_GAINS = (1.0, 0.6, 0.3)
_FORMANT_HALF_WIDTHS = (70.0, 90.0, 120.0)
_NASAL_LEVEL = 0.35  # of a vowel's RMS
# Unvoiced consonants: noise band (Hz) and level relative to a vowel's RMS; "t" is a short decaying burst.
_NOISE_BANDS = {"s": (4000.0, 7000.0, 0.5), "sh": (2000.0, 3800.0, 0.6), "f": (1000.0, 6000.0, 0.4)}
_BURST_BAND = (3000.0, 6000.0, 0.8)
_SECONDS = {"vowel": 0.09, "glide": 0.03, "s": 0.07, "sh": 0.07, "f": 0.06, "n": 0.05, "t": 0.045, "ramp": 0.01}
_MIN_CLIP_SECONDS = 0.5


class _Voice(NamedTuple):
    period: int  # pitch period in samples: an integer, so one period tiles the whole vowel seamlessly
    formant_scale: float  # vocal tract length: shifts every formant and noise band
    tempo: float  # multiplies every duration
    sampling_rate: int


def _samples(voice: _Voice, part: str) -> int:
    return int(round(_SECONDS[part] * voice.tempo * voice.sampling_rate))


def _one_period(formants: tuple[float, ...], voice: _Voice) -> np.ndarray:
    """One pitch period of a vowel: harmonics of the pitch weighted by the formant resonances, RMS 1."""
    pitch = voice.sampling_rate / voice.period
    top = min(5000.0, 0.45 * voice.sampling_rate)
    harmonics = np.arange(1, int(top // pitch) + 1)
    envelope = sum(
        gain / (1.0 + ((harmonics * pitch - formant * voice.formant_scale) / width) ** 2)
        for formant, gain, width in zip(formants, _FORMANT_GAINS, _FORMANT_HALF_WIDTHS)
    )
    phases = 2 * np.pi * np.outer(harmonics, np.arange(voice.period)) / voice.period
    period = (envelope[:, None] * np.sin(phases)).sum(axis=0)
    return period / np.sqrt(np.mean(period**2))


def _ramped(signal: np.ndarray, ramp: int) -> np.ndarray:
    """Raised-cosine fade in and out, so that segments start and end without clicks."""
    ramp = min(ramp, len(signal) // 2)
    fade = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, ramp))
    signal = signal.copy()
    signal[:ramp] *= fade
    signal[len(signal) - ramp :] *= fade[::-1]
    return signal


def _voiced(targets: list[tuple[tuple[float, ...], float, int]], voice: _Voice) -> np.ndarray:
    """Voicing through a sequence of (formants, level, samples) targets, cross-faded over a glide at each boundary."""
    boundaries = np.cumsum([0] + [length for _, _, length in targets])
    time = np.arange(boundaries[-1])
    half_glide = _samples(voice, "glide") / 2
    signal = np.zeros(len(time))
    for index, (formants, level, _) in enumerate(targets):
        start, end = boundaries[index], boundaries[index + 1]
        knots = [start - half_glide, start + half_glide, end - half_glide, end + half_glide]
        heights = [float(index == 0), 1.0, 1.0, float(index == len(targets) - 1)]
        period = _one_period(formants, voice)
        signal += level * np.interp(time, knots, heights) * np.resize(period, len(time))
    return _ramped(signal, _samples(voice, "ramp"))


def _noise_band(low: float, high: float, num_samples: int, voice: _Voice, rng: np.random.Generator) -> np.ndarray:
    """White noise kept between `low` and `high` Hz (scaled by the vocal tract, capped below Nyquist), RMS 1."""
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    frequencies = np.fft.rfftfreq(num_samples, 1.0 / voice.sampling_rate)
    nyquist_cap = 0.95 * voice.sampling_rate / 2
    low, high = min(low * voice.formant_scale, 0.8 * nyquist_cap), min(high * voice.formant_scale, nyquist_cap)
    spectrum[(frequencies < low) | (frequencies > high)] = 0.0
    noise = np.fft.irfft(spectrum, num_samples)
    return noise / max(np.sqrt(np.mean(noise**2)), 1e-8)


def _unvoiced(consonant: str, voice: _Voice, rng: np.random.Generator) -> np.ndarray:
    """A fricative (band noise) or the stop "t" (a closure, then a decaying burst); empty for "n" and for none."""
    if consonant in _NOISE_BANDS:
        low, high, level = _NOISE_BANDS[consonant]
        length = _samples(voice, consonant)
        return level * _ramped(_noise_band(low, high, length, voice, rng), 2 * _samples(voice, "ramp"))
    if consonant == "t":
        low, high, level = _BURST_BAND
        length = _samples(voice, "t")
        closure = length // 2
        decay = np.exp(-np.arange(length - closure) / (0.008 * voice.sampling_rate))
        burst = level * decay * _noise_band(low, high, length - closure, voice, rng)
        return np.concatenate([np.zeros(closure), burst])
    return np.zeros(0)


def _speak_word(word: str, voice: _Voice, rng: np.random.Generator) -> np.ndarray:
    onset, first_vowel, second_vowel, coda = DIGIT_PHONES[word]
    vowel_length = _samples(voice, "vowel")
    targets = [(_VOWEL_FORMANTS[first_vowel], 1.0, vowel_length), (_VOWEL_FORMANTS[second_vowel], 1.0, vowel_length)]
    nasal = (_NASAL_FORMANTS, _NASAL_LEVEL, _samples(voice, "n"))
    targets = ([nasal] if onset == "n" else []) + targets + ([nasal] if coda == "n" else [])
    return np.concatenate([_unvoiced(onset, voice, rng), _voiced(targets, voice), _unvoiced(coda, voice, rng)])


def _random_voice(rng: np.random.Generator, sampling_rate: int) -> _Voice:
    pitch = rng.uniform(100.0, 240.0)
    return _Voice(int(round(sampling_rate / pitch)), rng.uniform(0.9, 1.12), rng.uniform(0.85, 1.2), sampling_rate)


def _word_voice(voice: _Voice, rng: np.random.Generator) -> _Voice:
    """The speaker's voice with the small pitch, formant and tempo wobble of each new word."""
    return voice._replace(
        period=int(round(voice.period * rng.uniform(0.95, 1.05))),
        formant_scale=voice.formant_scale * rng.uniform(0.97, 1.03),
        tempo=voice.tempo * rng.uniform(0.92, 1.08),
    )


def speak_digits(words: list[str], *, sampling_rate: int = 16000, seed: int | np.random.Generator = 0) -> np.ndarray:
    """Speaks digit words with a random synthetic voice: the audio of one `asr` example.

    Args:
        words (`list[str]`):
            Words of [`DIGIT_PHONES`] ("zero" ... "nine").
        sampling_rate (`int`, *optional*, defaults to 16000):
            Samples per second (at least 8,000).
        seed (`int` or `np.random.Generator`, *optional*, defaults to 0):
            Draws the voice, pauses and noise.

    Returns:
        `np.ndarray`: float32 samples `(num_samples,)` in [-1, 1], at least 0.5 s long.
    """
    unknown = [word for word in words if word not in DIGIT_PHONES]
    if unknown or not words:
        raise ValueError(f"words must be 1 or more of {list(DIGIT_PHONES)}, got {words!r}.")
    if sampling_rate < 8000:
        raise ValueError(
            f"sampling_rate must be at least 8000 Hz for the consonants' noise bands, got {sampling_rate}."
        )
    rng = np.random.default_rng(seed)
    voice = _random_voice(rng, sampling_rate)
    pieces = [np.zeros(int(rng.uniform(0.05, 0.2) * sampling_rate))]
    for index, word in enumerate(words):
        if index:
            pieces.append(np.zeros(int(rng.uniform(0.05, 0.15) * sampling_rate)))
        pieces.append(_speak_word(word, _word_voice(voice, rng), rng))
    pieces.append(np.zeros(int(rng.uniform(0.05, 0.2) * sampling_rate)))
    speech = np.concatenate(pieces)
    speech = np.pad(speech, (0, max(0, int(_MIN_CLIP_SECONDS * sampling_rate) - len(speech))))
    speech_level = np.sqrt(np.mean(speech**2))
    noisy = speech + rng.standard_normal(len(speech)) * speech_level * 10 ** (-rng.uniform(20.0, 35.0) / 20)
    return (noisy * rng.uniform(0.3, 0.9) / np.abs(noisy).max()).astype(np.float32)
