#!/usr/bin/env python3
"""Writes BraidDataTests' fixtures into this folder (run from anywhere; output is committed).

PNGs are encoded here by hand with zlib, independently of libpng; pixel values follow the
formulas the tests recompute: 8-bit sample (x, y, c) = (37x + 11y + 71c + 5) % 256 and
16-bit sample = (9001x + 3007y + 20011c + 123) % 65536, on 5x4 images. JPEGs come from
cjpeg (libjpeg-turbo-progs) with djpeg's decoding beside them as the reference. The HDF5
file comes from h5import (hdf5-tools). Needs python3 with numpy, cjpeg, djpeg, h5import.
"""
import gzip
import os
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
W, H = 5, 4


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(name: str, rows: list[bytes], width: int, height: int, depth: int, color: int,
        extra: bytes = b"") -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    # Alternate filter types 0 (none) and 1 (sub) so the reader's unfiltering is exercised.
    bpp = max(1, {0: 1, 2: 3, 4: 2, 6: 4, 3: 1}[color] * depth // 8)
    raw = b""
    for y, row in enumerate(rows):
        if y % 2 == 1:
            sub = bytes((row[i] - (row[i - bpp] if i >= bpp else 0)) & 0xFF for i in range(len(row)))
            raw += b"\x01" + sub
        else:
            raw += b"\x00" + row
    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    (HERE / name).write_bytes(data)
    return data


def v8(x, y, c):
    return (37 * x + 11 * y + 71 * c + 5) % 256


def v16(x, y, c):
    return (9001 * x + 3007 * y + 20011 * c + 123) % 65536


def rows8(channels):
    return [bytes(v8(x, y, c) for x in range(W) for c in range(channels)) for y in range(H)]


def rows16(channels):
    return [b"".join(struct.pack(">H", v16(x, y, c)) for x in range(W) for c in range(channels))
            for y in range(H)]


png("gray8.png", rows8(1), W, H, 8, 0)
png("graya8.png", rows8(2), W, H, 8, 4)
rgb8 = png("rgb8.png", rows8(3), W, H, 8, 2)
png("rgba8.png", rows8(4), W, H, 8, 6)
png("gray16.png", rows16(1), W, H, 16, 0)
png("rgb16.png", rows16(3), W, H, 16, 2)
# Palette (x + y) % 4 with a tRNS chunk giving entries 0 and 1 alpha 255 and 128.
palette = bytes([10, 20, 30, 200, 100, 50, 0, 255, 128, 77, 77, 77])
png("palette.png", [bytes((x + y) % 4 for x in range(W)) for y in range(H)], W, H, 8, 3,
    chunk(b"PLTE", palette) + chunk(b"tRNS", bytes([255, 128])))
# 1-bit gray: white where (x + 2y) % 3 == 0.
bits = []
for y in range(H):
    value = 0
    for x in range(W):
        value |= (1 if (x + 2 * y) % 3 == 0 else 0) << (7 - x)
    bits.append(bytes([value]))
png("gray1.png", bits, W, H, 1, 0)

# Corrupt files.
(HERE / "truncated.png").write_bytes(rgb8[: len(rgb8) * 2 // 3])
bad = bytearray(rgb8)
idat = bad.index(b"IDAT")
bad[idat + 6] ^= 0xFF
(HERE / "badcrc.png").write_bytes(bytes(bad))
(HERE / "notimage.png").write_bytes(b"this is not an image\n")

# JPEGs: 16x8 RGB gradient and 8x8 gray, with djpeg's output as the reference.
jw, jh = 16, 8
ppm = b"P6\n%d %d\n255\n" % (jw, jh) + bytes(
    v for y in range(jh) for x in range(jw) for v in (x * 16, y * 32, 128))
pgm = b"P5\n8 8\n255\n" + bytes((x * 32 + y * 4) % 256 for y in range(8) for x in range(8))
for stem, src in (("rgb", ppm), ("gray", pgm)):
    jpg = subprocess.run(["cjpeg", "-quality", "95"], input=src, capture_output=True, check=True).stdout
    (HERE / f"{stem}.jpg").write_bytes(jpg)
    ref = subprocess.run(["djpeg", "-pnm"], input=jpg, capture_output=True, check=True).stdout
    (HERE / f"{stem}.jpg.{'ppm' if stem == 'rgb' else 'pgm'}").write_bytes(ref)
    if stem == "rgb":
        (HERE / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])

# IDX: 6 images of 3x2 (gzip) and their labels (plain).
n = 6
images = bytes((i * 7) % 256 for i in range(n * 3 * 2))
(HERE / "tiny-images-idx3-ubyte.gz").write_bytes(
    gzip.compress(b"\x00\x00\x08\x03" + struct.pack(">III", n, 3, 2) + images, mtime=0))
(HERE / "tiny-labels-idx1-ubyte").write_bytes(
    b"\x00\x00\x08\x01" + struct.pack(">I", n) + bytes([0, 1, 2, 0, 1, 2]))

# CSV (gzip, header, label first): 4 images of 2x3, values 0..10.
lines = ["label," + ",".join(f"p{i}" for i in range(6))]
for r in range(4):
    lines.append(",".join([str(r % 2)] + [str((r * 3 + i) % 11) for i in range(6)]))
(HERE / "tiny.csv.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0))

# HDF5: x_train uint8 [6, 3, 2, 3] = (i * 7) % 256 in C order; y_train int32 [6].
tmp = HERE / "h5tmp"
tmp.mkdir(exist_ok=True)
(tmp / "x.txt").write_text(" ".join(str((i * 7) % 256) for i in range(6 * 3 * 2 * 3)))
(tmp / "y.txt").write_text("0 1 2 0 1 2")
(tmp / "x.cfg").write_text("PATH x_train\nINPUT-CLASS TEXTIN\nRANK 4\nDIMENSION-SIZES 6 3 2 3\n"
                           "OUTPUT-CLASS UIN\nOUTPUT-SIZE 8\nOUTPUT-ARCHITECTURE NATIVE\n")
(tmp / "y.cfg").write_text("PATH y_train\nINPUT-CLASS TEXTIN\nRANK 1\nDIMENSION-SIZES 6\n"
                           "OUTPUT-CLASS IN\nOUTPUT-SIZE 32\nOUTPUT-ARCHITECTURE NATIVE\n")
out = HERE / "tiny.h5"
if out.exists():
    out.unlink()
subprocess.run(["h5import", str(tmp / "x.txt"), "-c", str(tmp / "x.cfg"), str(tmp / "y.txt"),
                "-c", str(tmp / "y.cfg"), "-o", str(out)], check=True)
for f in tmp.iterdir():
    f.unlink()
tmp.rmdir()
