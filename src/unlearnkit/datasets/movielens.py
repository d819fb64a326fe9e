"""MovieLens as implicit feedback: the embedded ml-latest-small, and loaders for 100K / 1M.

Harper & Konstan, "The MovieLens Datasets: History and Context", ACM TiiS 5(4), 2015,
doi:10.1145/2827872.

``load_movielens_small`` reads the October 2016 "ml-latest-small" files vendored in
``unlearnkit/datasets/data`` (redistributed under the GroupLens terms; see the ``NOTICE`` file
there). MovieLens 100K and 1M may not be redistributed: their loaders read the official files from
``root`` (``download=True`` fetches the official GroupLens archive into ``root``).
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import os
import re
import tempfile
import urllib.request
import zipfile
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import IO

import numpy as np
import torch
from torch import Tensor

from unlearnkit.atomic import atomic_write_bytes
from unlearnkit.datasets._io import default_data_dir
from unlearnkit.datasets.interactions import (
    InteractionData,
    build_interaction_data,
    implicit_from_ratings,
)

__all__ = [
    "MOVIELENS_GENRES",
    "MOVIELENS_URLS",
    "item_side_features",
    "load_movielens_100k",
    "load_movielens_1m",
    "load_movielens_small",
    "read_movies_csv",
]

#: The 19 MovieLens genres (alphabetical), the column order of the genre block of
#: :func:`item_side_features`; "(no genres listed)" maps to an all-zero block.
MOVIELENS_GENRES: tuple[str, ...] = (
    "Action",
    "Adventure",
    "Animation",
    "Children",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "IMAX",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)

#: Official GroupLens archives (used only with ``download=True``).
MOVIELENS_URLS: dict[str, str] = {
    "ml-100k": "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
    "ml-1m": "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
}

_YEAR_IN_TITLE = re.compile(r"\s*\((\d{4})(?:[-–]\d{0,4})?\)\s*$")


@contextlib.contextmanager
def _open_text(path: str | os.PathLike[str] | None, vendored: str):
    """Open a (possibly gzipped) text file, or the vendored package file when ``path`` is None."""
    if path is None:
        ref = resources.files("unlearnkit.datasets").joinpath("data", vendored)
        with ref.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8", newline="") as f:
            yield f
        return
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; pass the path of an existing MovieLens file")
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
            yield f
    else:
        with open(path, encoding="utf-8", newline="") as f:
            yield f


def _read_ratings_csv(f: IO[str]) -> np.ndarray:
    header = f.readline().strip().split(",")
    if header[:3] != ["userId", "movieId", "rating"]:
        raise ValueError(f"expected a ratings.csv header 'userId,movieId,rating,...', got {header}")
    return np.loadtxt(f, delimiter=",", ndmin=2, dtype=np.float64)


def _implicit(
    table: np.ndarray,
    name: str,
    k: int,
    threshold: float,
    seed: int,
    val_fraction: float,
    test_fraction: float,
) -> InteractionData:
    """The pipeline of every MovieLens loader: ratings ``>= threshold``, k-core, per-user split."""
    raw = implicit_from_ratings(table, threshold)
    return build_interaction_data(
        raw, k=k, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed, name=name
    )


def load_movielens_small(
    *,
    k: int = 5,
    threshold: float = 4.0,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    item_features: bool = False,
    max_title_features: int = 300,
) -> InteractionData:
    """The embedded default: MovieLens ml-latest-small (2016) as k-core implicit feedback.

    Harper & Konstan, ACM TiiS 2015. 100,004 ratings by 671 users on 9,066 movies; a rating
    ``>= threshold`` is a positive, then the ``k``-core is kept and split per user with ``seed``.
    With the defaults (threshold 4 keeps 51,568 positives; the 5-core keeps 659 users, 2,078 items
    and 44,413 positives; seed 0 splits them train 31,056 / val 4,473 / test 8,884). No file
    access beyond the package.

    Args:
        k: k-core threshold on users and items.
        threshold: Minimum rating of a positive.
        seed: Split seed.
        val_fraction: Per-user validation fraction.
        test_fraction: Per-user test fraction.
        item_features: Also compute :func:`item_side_features` into ``data.item_features``.
        max_title_features: TF-IDF vocabulary size when ``item_features`` is set.

    Returns:
        The dataset (``item_ids`` are MovieLens ``movieId`` values).

    Raises:
        ValueError: On bad fractions or if nothing survives the filter.
    """
    with _open_text(None, "ratings.csv.gz") as f:
        table = _read_ratings_csv(f)
    data = _implicit(table, "movielens-small", k, threshold, seed, val_fraction, test_fraction)
    if item_features:
        data.item_features = item_side_features(
            data.item_ids, max_title_features=max_title_features
        )
    return data


def _download_member(name: str, member: str, root: Path) -> None:
    """Fetch the official archive ``name`` and extract ``member`` into ``root`` atomically."""
    root.mkdir(parents=True, exist_ok=True)
    fd, tmp_zip = tempfile.mkstemp(dir=root, suffix=".zip.part")
    os.close(fd)
    try:
        urllib.request.urlretrieve(MOVIELENS_URLS[name], tmp_zip)
        with zipfile.ZipFile(tmp_zip) as zf:
            data = zf.read(f"{name}/{member}")
        atomic_write_bytes(root / name / member, data)
    finally:
        if os.path.exists(tmp_zip):
            os.remove(tmp_zip)


def _locate(
    root: str | os.PathLike[str] | None, name: str, member: str, download: bool, page: str
) -> Path:
    root = Path(root) if root is not None else default_data_dir() / name
    candidates = [root / member, root / name / member]
    for path in candidates:
        if path.is_file():
            return path
    if download:
        _download_member(name, member, root)
        return root / name / member
    raise FileNotFoundError(
        f"{candidates[0]} not found (nor {candidates[1]}): download {name}.zip from {page} "
        f"(GroupLens terms forbid us shipping it), unzip it into {root}, or pass download=True"
    )


def _load_ratings_text(path: Path, sep: str) -> np.ndarray:
    text = path.read_text(encoding="latin-1")
    if sep != "whitespace":
        text = text.replace(sep, " ")
    values = np.array(text.split(), dtype=np.float64)
    if values.size % 4:
        raise ValueError(f"{path}: expected 4 fields per line (user, item, rating, timestamp)")
    return values.reshape(-1, 4)


#: Ratings file, its field separator and the download page of each official GroupLens edition.
_GROUPLENS: dict[str, tuple[str, str, str]] = {
    "ml-100k": ("u.data", "whitespace", "https://grouplens.org/datasets/movielens/100k/"),
    "ml-1m": ("ratings.dat", "::", "https://grouplens.org/datasets/movielens/1m/"),
}


def _grouplens(
    name: str,
    root: str | os.PathLike[str] | None,
    k: int,
    threshold: float,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    download: bool,
) -> InteractionData:
    """Load the official edition ``name`` (a key of :data:`_GROUPLENS`) found under ``root``."""
    member, sep, page = _GROUPLENS[name]
    path = _locate(root, name, member, download, page)
    table = _load_ratings_text(path, sep)
    dataset = name.replace("ml-", "movielens-")
    return _implicit(table, dataset, k, threshold, seed, val_fraction, test_fraction)


def load_movielens_100k(
    root: str | os.PathLike[str] | None = None,
    *,
    k: int = 5,
    threshold: float = 4.0,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    download: bool = False,
) -> InteractionData:
    """MovieLens 100K (``u.data``: tab-separated user, item, rating, timestamp) as implicit data.

    Harper & Konstan, ACM TiiS 2015. Same pipeline as :func:`load_movielens_small`.

    Args:
        root: Folder with ``u.data`` or ``ml-100k/u.data`` (default
            ``$UNLEARNKIT_DATA/ml-100k``).
        k: k-core threshold.
        threshold: Minimum rating of a positive.
        seed: Split seed.
        val_fraction: Per-user validation fraction.
        test_fraction: Per-user test fraction.
        download: Fetch the official GroupLens zip into ``root`` if the file is missing.

    Returns:
        The dataset.

    Raises:
        FileNotFoundError: If ``u.data`` is missing (with where to get it).
        ValueError: On a malformed file, bad fractions, or an empty k-core.
    """
    return _grouplens("ml-100k", root, k, threshold, seed, val_fraction, test_fraction, download)


def load_movielens_1m(
    root: str | os.PathLike[str] | None = None,
    *,
    k: int = 5,
    threshold: float = 4.0,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    download: bool = False,
) -> InteractionData:
    """MovieLens 1M (``ratings.dat``: ``UserID::MovieID::Rating::Timestamp``) as implicit data.

    Harper & Konstan, ACM TiiS 2015. Same pipeline and options as :func:`load_movielens_100k`.

    Args:
        root: Folder with ``ratings.dat`` or ``ml-1m/ratings.dat`` (default
            ``$UNLEARNKIT_DATA/ml-1m``).
        k, threshold, seed, val_fraction, test_fraction: k-core threshold, minimum rating of a
            positive, split seed and per-user validation / test fractions.
        download: Fetch the official GroupLens zip into ``root`` if ``ratings.dat`` is missing.

    Returns:
        The dataset (named ``movielens-1m``).

    Raises:
        FileNotFoundError: If ``ratings.dat`` is missing (with where to get it).
        ValueError: On a malformed file, bad fractions, or an empty k-core.
    """
    return _grouplens("ml-1m", root, k, threshold, seed, val_fraction, test_fraction, download)


def read_movies_csv(
    movies: str | os.PathLike[str] | None = None,
) -> dict[int, tuple[str, int | None, list[str]]]:
    """Read a MovieLens ``movies.csv`` into ``{movieId: (title, year, genres)}``.

    Accepts the vendored 2016 edition (columns ``movieId,title,year,genres``) and the official
    ml-latest / ml-25m layout (``movieId,title,genres`` with the year as a ``(YYYY)`` title
    suffix, which is stripped from the title).

    Args:
        movies: Path to ``movies.csv`` or ``movies.csv.gz``; ``None`` for the vendored file.

    Returns:
        Mapping from raw movie id to (title, year or None, genre list).

    Raises:
        FileNotFoundError: If the file is missing.
        ValueError: If required columns are absent.
    """
    out: dict[int, tuple[str, int | None, list[str]]] = {}
    with _open_text(movies, "movies.csv.gz") as f:
        reader = csv.DictReader(f)
        needed = {"movieId", "title", "genres"}
        if reader.fieldnames is None or not needed <= set(reader.fieldnames):
            raise ValueError(
                f"movies file must have columns {sorted(needed)} (+ optional year), got "
                f"{reader.fieldnames}"
            )
        for row in reader:
            title = row["title"].strip()
            year_text = (row.get("year") or "").strip()
            match = _YEAR_IN_TITLE.search(title)
            if match:
                title = title[: match.start()].strip()
                year_text = year_text or match.group(1)
            year = int(year_text) if year_text.isdigit() else None
            genres = [g for g in row["genres"].split("|") if g in MOVIELENS_GENRES]
            out[int(row["movieId"])] = (title, year, genres)
    return out


def item_side_features(
    item_ids: Tensor | Sequence[int],
    movies: str | os.PathLike[str] | None = None,
    *,
    max_title_features: int = 300,
    return_names: bool = False,
) -> Tensor | tuple[Tensor, list[str]]:
    """Item side features from ``movies.csv``: multi-hot genres, normalized year, title TF-IDF.

    Content features for the feature-aware recommender (the CPU-scale stand-in for multimodal
    item content). Columns, in order:

    - 19 genre indicators in :data:`MOVIELENS_GENRES` order (0/1);
    - release year min-max scaled to ``[0, 1]`` over the given items (missing year: the mean);
    - L2-normalized TF-IDF of titles (scikit-learn ``TfidfVectorizer``, English stop words,
      at most ``max_title_features`` terms, fitted on the given items' titles).

    Args:
        item_ids: Raw ``movieId`` of each contiguous item id (``InteractionData.item_ids``).
        movies: Path to ``movies.csv(.gz)``; ``None`` for the vendored file.
        max_title_features: TF-IDF vocabulary size (0: no title block).
        return_names: Also return the column names (``genre=...``, ``year``, ``title=...``).

    Returns:
        The feature matrix (and the column names if requested). Items absent from the file get
        zero genres and titles and the mean year.

    Shapes:
        item_ids: ``(I,)``. Returns ``(I, 19 + 1 + T)`` float32 with ``T <= max_title_features``.

    Raises:
        FileNotFoundError: If ``movies`` does not exist.
        ValueError: If ``max_title_features < 0`` or the file lacks required columns.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    if max_title_features < 0:
        raise ValueError(f"max_title_features must be >= 0, got {max_title_features}")
    ids = [int(i) for i in (item_ids.tolist() if isinstance(item_ids, Tensor) else item_ids)]
    catalog = read_movies_csv(movies)
    n = len(ids)
    genre_col = {g: j for j, g in enumerate(MOVIELENS_GENRES)}
    genres = np.zeros((n, len(MOVIELENS_GENRES)), dtype=np.float32)
    years = np.full(n, np.nan)
    titles = [""] * n
    for row, movie_id in enumerate(ids):
        if movie_id not in catalog:
            continue
        title, year, gs = catalog[movie_id]
        titles[row] = title
        if year is not None:
            years[row] = year
        for g in gs:
            genres[row, genre_col[g]] = 1.0
    known = ~np.isnan(years)
    year_col = np.zeros(n, dtype=np.float32)
    if known.any():
        lo, hi = years[known].min(), years[known].max()
        scaled = (years[known] - lo) / (hi - lo) if hi > lo else np.zeros(int(known.sum()))
        year_col[known] = scaled
        year_col[~known] = scaled.mean()
    blocks = [genres, year_col[:, None]]
    names = [f"genre={g}" for g in MOVIELENS_GENRES] + ["year"]
    if max_title_features > 0 and any(titles):
        vec = TfidfVectorizer(max_features=max_title_features, stop_words="english")
        try:
            tfidf = vec.fit_transform(titles).toarray().astype(np.float32)
            blocks.append(tfidf)
            names += [f"title={t}" for t in vec.get_feature_names_out()]
        except ValueError:  # only stop words: empty vocabulary, no title block
            pass
    features = torch.from_numpy(np.concatenate(blocks, axis=1))
    return (features, names) if return_names else features
