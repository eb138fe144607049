"""What every format reader gets: the source (a folder or a zip), its listing, where the dataset starts
inside it, the read options, and helpers for label files and the images they name."""
from __future__ import annotations

import csv
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from ferkit.data.fer2013 import IMAGE_EXTENSIONS
from ferkit.data.options import ReadOptions
from ferkit.data.raw import Item, RawRead, assemble
from ferkit.data.readers import FolderSource, Listing, ZipSource, decode_faces
from ferkit.errors import DataError



@dataclass
class ReadContext:
    source: FolderSource | ZipSource
    listing: Listing
    root: str  # prefix of the dataset inside the source: "" or "wrapper/"
    where: str  # the path the user gave, for messages
    options: ReadOptions = field(default_factory=ReadOptions)
    progress: bool = False
    spill: object | None = None  # ferkit.data.cache.Spill: where a large build streams its faces
    _files: set[str] | None = None

    @property
    def files(self) -> set[str]:
        if self._files is None:
            self._files = set(self.listing.files)
        return self._files

    def rel(self, name: str) -> str:
        """A source path as a path below the dataset root (what messages and source ids show)."""
        return name[len(self.root):] if name.startswith(self.root) else name

    def exists(self, rel: str) -> bool:
        return self.root + rel in self.files

    def under(self, rel_dir: str) -> list[str]:
        """Files below ``rel_dir`` (relative to the root), as root-relative paths, sorted."""
        prefix = self.root + rel_dir.rstrip("/") + "/" if rel_dir else self.root
        return [f[len(self.root):] for f in self.listing.files if f.startswith(prefix)]

    def text_lines(self, rel: str) -> Iterator[tuple[int, str]]:
        """(line number from 1, line without its newline) of a UTF-8 text file; a BOM is ignored."""
        try:
            with self.source.open_text(self.root + rel) as fh:
                for number, line in enumerate(fh, start=1):
                    yield number, line.rstrip("\r\n").lstrip("\ufeff") if number == 1 else line.rstrip("\r\n")
        except UnicodeDecodeError as exc:
            raise DataError(f"{self.where}: {rel}: expected UTF-8 text; found undecodable bytes ({exc.reason})"
                            ) from None
        except (OSError, zipfile.BadZipFile) as exc:
            raise DataError(f"{self.where}: {rel}: cannot be read ({exc})") from None

    def csv_rows(self, rel: str) -> Iterator[tuple[int, list[str]]]:
        """(line number, cells) of a CSV file, skipping blank lines."""
        try:
            with self.source.open_text(self.root + rel) as fh:
                reader = csv.reader(fh)
                for row in reader:
                    if row and any(c.strip() for c in row):
                        if reader.line_num == 1 and row[0].startswith("\ufeff"):
                            row[0] = row[0][1:]
                        yield reader.line_num, row
        except UnicodeDecodeError as exc:
            raise DataError(f"{self.where}: {rel}: expected a UTF-8 text CSV; found undecodable bytes "
                            f"({exc.reason})") from None
        except csv.Error as exc:
            raise DataError(f"{self.where}: {rel}: not a readable CSV ({exc})") from None
        except (OSError, zipfile.BadZipFile) as exc:
            raise DataError(f"{self.where}: {rel}: cannot be read ({exc})") from None

    def image_prefix(self, label_file: str, paths: list[str], candidates: list[str]) -> str:
        """The folder (root-relative, '' or ending in '/') below which the images a label file names live:
        the candidate under which most of the first named paths exist."""
        sample = paths[:50]
        best, hits = "", -1
        for folder in candidates:
            n = sum(self.exists(folder + p) for p in sample)
            if n > hits:
                best, hits = folder, n
        if sample and hits <= 0:
            looked = ", ".join((c or "./") for c in candidates[:6]) + (", ..." if len(candidates) > 6 else "")
            raise DataError(f"{self.where}: none of the images {label_file} names (e.g. {sample[0]}) exist; "
                            f"looked under {looked}")
        return best

    def folders(self, max_depth: int = 2) -> list[str]:
        """Root-relative folders ('' first, then 'a/', 'a/b/') up to ``max_depth`` levels deep."""
        out = [""]
        for d in sorted(self.listing.dirs):
            if d.startswith(self.root) and d != self.root.rstrip("/"):
                rel = d[len(self.root):]
                if rel and rel.count("/") < max_depth:
                    out.append(rel + "/")
        return out

    def decode(self, report: RawRead, items: list[Item], *, size: int | None, color: str,
               label_names: tuple[str, ...] | None = None, desc: str = "") -> RawRead:
        """Decode ``items`` (the options' size and colour override the format's defaults) into ``report``."""
        size = self.options.size or size
        color = color if self.options.color == "auto" else self.options.color
        decoded = decode_faces(self.source, [it.name for it in items], [it.box for it in items], size=size,
                               color=color, fit=self.options.fit, progress=self.progress,
                               desc=desc or report.format, spill=self.spill)
        if decoded.clipped:
            report.warnings.append(f"{decoded.clipped} face box(es) reach past their image's border; the missing "
                                   f"part was filled by repeating the border")
        if decoded.resized and size is None:  # a folder of crops of mixed sizes; a chosen size is no news
            report.warnings.append(f"{decoded.resized} image(s) were not {decoded.size}x{decoded.size} and "
                                   f"were cropped to their centre square and resized")
        return assemble(report, items, decoded.images, decoded.reasons, label_names=label_names)


def is_image(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS


def clean_path(path: str) -> str:
    """A path as written in a label file, as a POSIX path below the dataset root."""
    path = path.strip().replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    return path
