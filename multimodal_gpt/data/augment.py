"""Training-time augmentation, applied by the training collators only (never in evaluation or generation).

- Audio: speed perturbation (Kaldi's: resampling changes tempo and pitch together, factors around 1), white noise at
  a random signal-to-noise ratio, and SpecAugment's time and frequency masks on log-mel features (Whisper-style
  towers; the masked stretch takes the clip's mean value).
- Images: random resized crops (a random area and aspect ratio, then the image processor resizes as usual) and
  horizontal flips. A flip turns "the dog on the left" into a wrong caption, so a row whose texts (every reference,
  the source sentence) name a side in English, German, French or Czech is never flipped.

Every random choice comes from a generator seeded by the run's seed, the epoch and the row itself (its media paths
and texts), so a run is reproducible, each epoch sees other variants, and dataloader workers agree.
"""

import re
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

# Words that name a side: a flipped image would contradict them (en, de, fr, cs).
SIDE_WORDS = re.compile(
    r"\b(left|right|links|rechts|linke\w*|rechte\w*|gauche|droite|vlevo|vpravo|lev[ýáé]\w*|prav[ýáé]\w*)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Augmentation:
    """What the training collator changes in each sample (all off by default).

    Args:
        seed (`int`): the run's seed; with the epoch and the row it seeds every random choice.
        speed_perturbation (`float`): resample each clip by a factor drawn from [1 - this, 1 + this] (0: off).
        noise_snr_db (`float`, *optional*): add white noise at a signal-to-noise ratio drawn from [this, this + 20]
            dB (`None`: off).
        time_masks (`int`): SpecAugment time masks per clip (log-mel features only).
        time_mask_fraction (`float`): the longest time mask, as a fraction of the clip's valid frames.
        frequency_masks (`int`): SpecAugment frequency masks per clip.
        frequency_mask_bins (`int`): the widest frequency mask, in mel bins.
        crop_scale (`float`): random resized crops keep at least this fraction of the image's area (1: off).
        horizontal_flip (`bool`): flip half the images, except those whose texts name a side.
    """

    seed: int = 0
    speed_perturbation: float = 0.0
    noise_snr_db: float | None = None
    time_masks: int = 0
    time_mask_fraction: float = 0.05
    frequency_masks: int = 0
    frequency_mask_bins: int = 8
    crop_scale: float = 1.0
    horizontal_flip: bool = False

    def __post_init__(self):
        if not 0 <= self.speed_perturbation < 1:
            raise ValueError(f"speed_perturbation must be in [0, 1), got {self.speed_perturbation}.")
        if not 0 < self.crop_scale <= 1:
            raise ValueError(f"crop_scale must be in (0, 1], got {self.crop_scale}.")
        if not 0 <= self.time_mask_fraction <= 1:
            raise ValueError(f"time_mask_fraction must be in [0, 1], got {self.time_mask_fraction}.")
        if min(self.time_masks, self.frequency_masks, self.frequency_mask_bins) < 0:
            raise ValueError("time_masks, frequency_masks and frequency_mask_bins must be >= 0.")

    @property
    def changes_anything(self) -> bool:
        return bool(
            self.speed_perturbation
            or self.noise_snr_db is not None
            or self.time_masks
            or self.frequency_masks
            or self.crop_scale < 1
            or self.horizontal_flip
        )

    def generator(self, media: tuple[Any, ...], texts: tuple[str, ...], epoch: int) -> np.random.Generator:
        """The random generator of one row in one epoch: the same row, seed and epoch give the same choices."""
        identity = "\n".join([*(source for source in media if isinstance(source, str)), *texts])
        return np.random.default_rng([self.seed, epoch, zlib.crc32(identity.encode("utf-8"))])

    # ----- images -----------------------------------------------------------------------------------------------

    def image(self, image: Image.Image, generator: np.random.Generator, texts: tuple[str, ...]) -> Image.Image:
        """A random resized crop of `image` (PIL), flipped half the time unless `texts` name a side."""
        if self.crop_scale < 1:
            image = self._random_crop(image, generator)
        if self.horizontal_flip and generator.random() < 0.5 and not any(SIDE_WORDS.search(text) for text in texts):
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return image

    def _random_crop(self, image: Image.Image, generator: np.random.Generator) -> Image.Image:
        """torchvision's RandomResizedCrop choice (area in [crop_scale, 1], aspect ratio in [3/4, 4/3]), without the
        resize: the image processor resizes every image to the tower's size anyway."""
        width, height = image.size
        area = width * height * generator.uniform(self.crop_scale, 1.0)
        ratio = float(np.exp(generator.uniform(np.log(3 / 4), np.log(4 / 3))))
        crop_width = min(width, max(1, round((area * ratio) ** 0.5)))
        crop_height = min(height, max(1, round((area / ratio) ** 0.5)))
        left = int(generator.integers(0, width - crop_width + 1))
        top = int(generator.integers(0, height - crop_height + 1))
        return image.crop((left, top, left + crop_width, top + crop_height))

    # ----- audio ------------------------------------------------------------------------------------------------

    def waveform(self, samples: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        """`samples` (float32, mono) with speed perturbation and noise."""
        if self.speed_perturbation:
            factor = generator.uniform(1 - self.speed_perturbation, 1 + self.speed_perturbation)
            length = max(1, round(len(samples) / factor))
            samples = np.interp(np.arange(length) * factor, np.arange(len(samples)), samples).astype(np.float32)
        if self.noise_snr_db is not None:
            snr_db = generator.uniform(self.noise_snr_db, self.noise_snr_db + 20)
            signal_rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
            noise = generator.standard_normal(len(samples)) * signal_rms / 10 ** (snr_db / 20)
            samples = (samples + noise).astype(np.float32)
        return samples

    def log_mel(self, features: torch.Tensor, valid_frames: int, generator: np.random.Generator) -> torch.Tensor:
        """SpecAugment's masks on one clip's features (num_mel_bins, frames), within its `valid_frames`: masked
        stretches take the mean of the valid features."""
        if not (self.time_masks or self.frequency_masks) or valid_frames < 1:
            return features
        features = features.clone()
        fill = features[:, :valid_frames].mean()
        longest = int(self.time_mask_fraction * valid_frames)
        for _ in range(self.time_masks):
            width = int(generator.integers(0, longest + 1))
            start = int(generator.integers(0, valid_frames - width + 1))
            features[:, start : start + width] = fill
        num_bins = features.shape[0]
        for _ in range(self.frequency_masks):
            width = int(generator.integers(0, min(self.frequency_mask_bins, num_bins) + 1))
            start = int(generator.integers(0, num_bins - width + 1))
            features[start : start + width, :valid_frames] = fill
        return features


def augmentation_from_arguments(data_args: Any, seed: int) -> Augmentation | None:
    """The augmentation asked for by a run's data flags (`--audio_speed_perturbation`, `--spec_augment_*`,
    `--image_crop_scale`, ...), seeded with the run's seed; `None` when no flag asks for any."""
    values = {
        "speed_perturbation": data_args.audio_speed_perturbation,
        "noise_snr_db": data_args.audio_noise_snr_db,
        "time_masks": data_args.spec_augment_time_masks,
        "time_mask_fraction": data_args.spec_augment_time_mask_fraction,
        "frequency_masks": data_args.spec_augment_frequency_masks,
        "frequency_mask_bins": data_args.spec_augment_frequency_mask_bins,
        "crop_scale": data_args.image_crop_scale,
        "horizontal_flip": data_args.image_horizontal_flip,
    }
    augmentation = Augmentation(seed=seed, **{name: value for name, value in values.items() if value is not None})
    return augmentation if augmentation.changes_anything else None


__all__ = ["SIDE_WORDS", "Augmentation", "augmentation_from_arguments"]
