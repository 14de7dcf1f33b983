"""Speech data for the ``asr`` space: LibriSpeech's layout and synthesized spoken words.

Audio is read with soundfile (FLAC/WAV; torchaudio 2.8 ships no decoder of its own) or, for WAV
without soundfile, the standard ``wave`` module; features are per-utterance normalised log-mel
frames ``(T, n_mels)`` from torchaudio (25 ms windows, 10 ms hop at 16 kHz), computed on read.
Transcripts are lower-cased to the CTC alphabet (space, a-z, apostrophe; blank is id 0).
"""

from __future__ import annotations

import shutil
import subprocess
import wave
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from denas.data.common import DataBundle, DataError, apply_limit, first, require_path, split_indices
from denas.data.layouts import LIBRISPEECH_LAYOUT, SPOKEN_WORDS_LAYOUT

SAMPLE_RATE = 16_000
ALPHABET = " abcdefghijklmnopqrstuvwxyz'"  # id i+1 is ALPHABET[i]; matches denas.spaces.asr.VOCAB
DEFAULT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def text_to_ids(text: str) -> list[int]:
    return [ALPHABET.index(c) + 1 for c in text.lower() if c in ALPHABET]


def read_audio(file: Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples and the sample rate."""
    try:
        import soundfile

        data, rate = soundfile.read(str(file), dtype="float32", always_2d=True)
        return data.mean(axis=1), int(rate)
    except ImportError:
        if file.suffix.lower() != ".wav":
            raise DataError(
                f"{file}: reading {file.suffix} needs the soundfile package (pip install soundfile)"
            ) from None
    except Exception as exc:  # soundfile raises its own LibsndfileError
        raise DataError(f"{file}: unreadable audio ({exc})") from exc
    with wave.open(str(file)) as w:
        if w.getsampwidth() != 2:
            raise DataError(f"{file}: only 16-bit PCM WAV is readable without soundfile")
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).reshape(-1, w.getnchannels())
        return pcm.mean(axis=1).astype(np.float32) / 32768.0, w.getframerate()


class LogMel:
    """Waveform -> per-utterance normalised log-mel frames ``(T, n_mels)``."""

    def __init__(self, n_mels: int):
        import torchaudio

        self.n_mels = n_mels
        self.mel = torchaudio.transforms.MelSpectrogram(SAMPLE_RATE, n_fft=400, hop_length=160, n_mels=n_mels)

    def __call__(self, samples: np.ndarray, rate: int) -> torch.Tensor:
        wav = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
        if rate != SAMPLE_RATE:
            import torchaudio.functional as AF

            wav = AF.resample(wav, rate, SAMPLE_RATE)
        feats = (self.mel(wav) + 1e-6).log().T  # (T, n_mels)
        return (feats - feats.mean()) / (feats.std() + 1e-5)


class Utterances(Dataset):
    """``(features (T, n_mels), transcript)`` read lazily from ``(audio file, transcript)`` pairs."""

    def __init__(self, items: list[tuple[Path, str]], features: LogMel):
        self.items, self.features = items, features

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        file, text = self.items[i]
        return self.features(*read_audio(file)), text


def collate_utterances(items: list[tuple[torch.Tensor, str]]) -> tuple[torch.Tensor, dict[str, Any]]:
    """Zero-pad features to the longest utterance; targets as CTCTask wants them."""
    frames = max(f.shape[0] for f, _ in items)
    feats = torch.zeros(len(items), frames, items[0][0].shape[1])
    for k, (f, _) in enumerate(items):
        feats[k, : f.shape[0]] = f
    labels = [text_to_ids(t) for _, t in items]
    padded = torch.zeros(len(items), max(1, max(len(x) for x in labels)), dtype=torch.long)
    for k, ids in enumerate(labels):
        padded[k, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return feats, {
        "labels": padded,
        "label_lengths": torch.tensor([len(x) for x in labels]),
        "input_lengths": torch.tensor([f.shape[0] for f, _ in items]),
        "frames": frames,
        "texts": [" ".join(t.lower().split()) for _, t in items],
    }


def _bundle(
    name: str, train: list, test: list, config: dict[str, Any], limit: int | None, seed: int, **info: Any
) -> DataBundle:
    features = LogMel(int(first(config, ["n_mels"], 80)))
    train_set = apply_limit(Utterances(train, features), limit, seed)
    return DataBundle(
        name=name,
        train=train_set,
        test=Utterances(test, features),
        task="ctc",
        collate=collate_utterances,
        info={"train_size": len(train_set), "test_size": len(test), "alphabet": ALPHABET, **info},
    )


# ----- LibriSpeech ------------------------------------------------------------------------------
def load_librispeech(
    *, path: str | None, config: dict[str, Any], limit: int | None, seed: int, **_: Any
) -> DataBundle:
    root = require_path(path, "librispeech", LIBRISPEECH_LAYOUT)
    by_split: dict[str, list[tuple[Path, str]]] = {}
    for trans in sorted(root.rglob("*.trans.txt")):
        depth = len(trans.relative_to(root).parts)  # split/speaker/chapter/file = 4, speaker/chapter/file = 3
        split = trans.relative_to(root).parts[0] if depth >= 4 else ""
        by_split.setdefault(split, []).extend(_read_transcripts(trans))
    if not by_split:
        raise DataError(f"{root}: no *.trans.txt transcripts found; expected {LIBRISPEECH_LAYOUT}")
    train = [u for s, us in by_split.items() if s.startswith("train") or s == "" for u in us]
    test = [u for s, us in by_split.items() if s.startswith(("dev", "test")) for u in us]
    if not test or not train:  # one split only: hold out 10% of it
        everything = train + test
        train_idx, test_idx = split_indices(len(everything), 0.1, seed)
        train, test = [everything[i] for i in train_idx], [everything[i] for i in test_idx]
    return _bundle("librispeech", train, test, config, limit, seed, path=str(root), splits=sorted(by_split))


def _read_transcripts(trans: Path) -> list[tuple[Path, str]]:
    items = []
    for n, line in enumerate(trans.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        utt, _, text = line.strip().partition(" ")
        audio = next(
            (
                trans.parent / f"{utt}{ext}"
                for ext in (".flac", ".wav")
                if (trans.parent / f"{utt}{ext}").is_file()
            ),
            None,
        )
        if not text or audio is None:
            problem = "no transcript" if not text else f"no {utt}.flac beside it"
            raise DataError(f"{trans}:{n}: {problem}; expected {LIBRISPEECH_LAYOUT}")
        items.append((audio, text))
    return items


# ----- spoken-words -------------------------------------------------------------------------------
def synthesize_spoken_words(
    directory: str | Path,
    words: Iterable[str] = DEFAULT_WORDS,
    voices: Iterable[str] = ("en-us", "en-gb", "en-gb-scotland"),
    speeds: Iterable[int] = (130, 170),
    pitches: Iterable[int] = (35, 65),
) -> Path:
    """Write one WAV per word x voice x speed x pitch with espeak-ng into ``directory/<word>/``."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise DataError(
            "espeak-ng is not installed (Debian: apt-get install -y espeak-ng); it synthesizes spoken-words"
        )
    root = Path(directory)
    for word in words:
        (root / word).mkdir(parents=True, exist_ok=True)
        for voice in voices:
            for speed in speeds:
                for pitch in pitches:
                    out = root / word / f"{word}-{voice}-{speed}-{pitch}.wav"
                    if not out.exists():
                        cmd = [espeak, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(out), word]
                        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    return root


def load_spoken_words(
    *, path: str | None, config: dict[str, Any], limit: int | None, seed: int, **_: Any
) -> DataBundle:
    root = require_path(path, "spoken-words", SPOKEN_WORDS_LAYOUT)
    items = [(f, d.name) for d in sorted(root.iterdir()) if d.is_dir() for f in sorted(d.glob("*.wav"))]
    if not items:
        raise DataError(f"{root}: no clips found; expected {SPOKEN_WORDS_LAYOUT}")
    train_idx, test_idx = split_indices(len(items), 0.2, seed)
    words = sorted({w for _, w in items})
    return _bundle(
        "spoken-words",
        [items[i] for i in train_idx],
        [items[i] for i in test_idx],
        config,
        limit,
        seed,
        path=str(root),
        words=words,
    )
