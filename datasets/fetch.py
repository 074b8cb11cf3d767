"""Getting IDX datasets onto disk: local copies first, then Debian's package, then the public mirror."""
from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from datasets.core import DataError, data_dir, fetch_command
from datasets.idx import sha256, verify

# Files whose checksum this process has verified, keyed by (path, size, mtime in ns, expected digest): a sweep
# used to hash Fashion-MNIST's IDX files once per trial per seed. A file is hashed once per process
# however often it is loaded (another ``train_limit`` too); one rewritten since has another size or mtime, and
# is hashed again.
_VERIFIED: set[tuple[str, int, int, str]] = set()


def verify_once(path: Path, expected: str, fix: str) -> None:
    """``datasets.idx.verify`` once per process for an unchanged file (see ``_VERIFIED``)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, expected)
    if key not in _VERIFIED:
        verify(path, expected, fix)
        _VERIFIED.add(key)


def forget_verified() -> None:
    """Forget which files were verified: the next load hashes them again."""
    _VERIFIED.clear()


SPLIT_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclass(frozen=True)
class IdxSource:
    name: str
    # SHA-256 of the *decompressed* files; None where no reference hash is known (then only the
    # IDX header is checked). Debian recompresses the .gz files, so only decompressed bytes compare.
    checksums: dict[str, str] | None
    system_dirs: tuple[str, ...]
    debian_package: str | None
    mirrors: tuple[str, ...]

    @property
    def cache(self) -> Path:
        return data_dir() / self.name

    def cached(self) -> bool:
        return all((self.cache / f).is_file() for f in SPLIT_FILES)

    def local_files(self) -> dict[str, Path]:
        """Verified decompressed files from the cache or a system directory, or a DataError naming the fix."""
        if not self.cached():
            for d in self.system_dirs:
                if all((Path(d) / f"{f}.gz").is_file() for f in SPLIT_FILES):
                    self._install_from(Path(d))
                    break
        if not self.cached():
            raise DataError(f"dataset {self.name!r} is not on this machine; fetch it with: {fetch_command(self.name)}")
        files = {f: self.cache / f for f in SPLIT_FILES}
        if self.checksums:
            for f, path in files.items():
                verify_once(path, self.checksums[f], fetch_command(self.name))
        return files

    def _install_from(self, directory: Path) -> None:
        self.cache.mkdir(parents=True, exist_ok=True)
        for f in SPLIT_FILES:
            src = directory / f"{f}.gz"
            if not src.is_file():
                src = directory / f
            tmp = self.cache / f".{f}.partial"
            with (gzip.open(src) if src.suffix == ".gz" else open(src, "rb")) as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout)
            if self.checksums and sha256(tmp) != self.checksums[f]:
                tmp.unlink()
                raise DataError(f"checksum mismatch for {f} from {directory}; expected sha256 {self.checksums[f]}")
            os.replace(tmp, self.cache / f)  # a half-written file is never left under the final name

    def fetch(self, log=print) -> Path:
        """Make the dataset available offline-first; returns the cache directory."""
        if self.cached():
            self.local_files()
            return self.cache
        for d in self.system_dirs:
            if Path(d).is_dir():
                try:
                    self.local_files()
                    log(f"{self.name}: copied from {d}")
                    return self.cache
                except DataError:
                    pass
        errors = []
        if self.debian_package:
            try:
                self._fetch_debian(log)
                return self.cache
            except (DataError, OSError, subprocess.SubprocessError) as e:
                errors.append(f"Debian package {self.debian_package}: {e}")
        for url in self.mirrors:
            try:
                self._fetch_mirror(url, log)
                return self.cache
            except (DataError, OSError) as e:
                errors.append(f"{url}: {e}")
        raise DataError(f"could not fetch {self.name!r}: " + "; ".join(errors))

    def _fetch_debian(self, log) -> None:
        if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
            raise DataError("apt-get/dpkg-deb not available")
        with tempfile.TemporaryDirectory() as tmp:
            tmpdir = Path(tmp)
            cmd = ["apt-get", "download", self.debian_package]
            result = subprocess.run(cmd, cwd=tmpdir, capture_output=True, text=True)
            if result.returncode != 0:
                # A fresh machine has no package lists; refreshing them needs root.
                if hasattr(os, "geteuid") and os.geteuid() == 0:
                    log("apt-get download failed; running apt-get update once")
                    subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True, check=False)
                    result = subprocess.run(cmd, cwd=tmpdir, capture_output=True, text=True)
                if result.returncode != 0:
                    raise DataError(
                        f"`apt-get download {self.debian_package}` failed ({result.stderr.strip()[-200:]}); "
                        f"run `sudo apt-get update` once, then {fetch_command(self.name)}"
                    )
            debs = list(tmpdir.glob("*.deb"))
            if not debs:
                raise DataError("apt-get download produced no .deb")
            # Unpack into the temporary directory only and take the known files from it by name,
            # so nothing in the archive can write elsewhere.
            unpacked = tmpdir / "unpacked"
            subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)], check=True, capture_output=True)
            for d in self.system_dirs:
                inner = unpacked / d.lstrip("/")
                if inner.is_dir():
                    self._install_from(inner)
                    log(f"{self.name}: unpacked from Debian package {self.debian_package}")
                    return
            raise DataError(f"{self.debian_package} did not contain the expected files")

    def _fetch_mirror(self, url: str, log) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            for f in SPLIT_FILES:
                with urllib.request.urlopen(f"{url.rstrip('/')}/{f}.gz", timeout=30) as r, open(Path(tmp) / f"{f}.gz", "wb") as out:
                    shutil.copyfileobj(r, out)
            self._install_from(Path(tmp))
        log(f"{self.name}: downloaded from {url}")


FASHION_MNIST = IdxSource(
    name="fashion-mnist",
    checksums={
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
    system_dirs=("/usr/share/datasets/fashion-mnist",),
    debian_package="dataset-fashion-mnist",
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",),
)

MNIST = IdxSource(
    name="mnist",
    checksums=None,
    system_dirs=tuple(d for d in (os.environ.get("MNIST_DIR"),) if d),
    debian_package=None,
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist",),
)
