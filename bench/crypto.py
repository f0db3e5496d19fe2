"""Dapr's encryption scheme v1 in Tandem vs the bare cipher it is built on.

    python bench/crypto.py [--mib 64] [--rounds 3]

In process, no sidecar: the scheme's Encryptor/Decryptor (HKDF, header MAC, 64 KiB AEAD
segments, fed 2 KiB chunks as the SDK sends them, then 1 MiB chunks) against a baseline of the same AEAD over
the same 64 KiB segments with no framing. Prints MiB/s of each and the scheme / baseline
time ratio, per cipher.
"""

from __future__ import annotations

import argparse
import os
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from tandem.blocks.crypto import scheme

SDK_CHUNK = 2 << 10


def _baseline(data: bytes, cipher: scheme.Cipher) -> float:
    key = os.urandom(32)
    aead = AESGCM(key) if cipher is scheme.Cipher.AES_GCM else ChaCha20Poly1305(key)
    nonce = os.urandom(12)
    start = time.perf_counter()
    sealed = [
        aead.encrypt(nonce, data[i : i + scheme.SEGMENT_SIZE], None)
        for i in range(0, len(data), scheme.SEGMENT_SIZE)
    ]
    for s in sealed:
        aead.decrypt(nonce, s, None)
    return time.perf_counter() - start


def _scheme(data: bytes, cipher: scheme.Cipher, step: int) -> float:
    file_key = scheme.new_file_key()
    manifest = scheme.Manifest(1, file_key, cipher, os.urandom(7), "k")
    start = time.perf_counter()
    enc = scheme.Encryptor(file_key, manifest)
    parts = [enc.header]
    for i in range(0, len(data), step):
        parts.append(enc.update(data[i : i + step]))
    parts.append(enc.finish())
    sealed = b"".join(parts)
    header = scheme.read_header(sealed)
    assert header is not None
    m, signed, mac, length = header
    dec = scheme.Decryptor(file_key, m, signed, mac)
    out = [dec.update(sealed[i : i + step]) for i in range(length, len(sealed), step)]
    out.append(dec.finish())
    elapsed = time.perf_counter() - start
    assert b"".join(out) == data
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    data = os.urandom(args.mib << 20)
    print("| cipher | path | MiB/s (encrypt + decrypt) | time / baseline |")
    print("|---|---|---|---|")
    for cipher in scheme.Cipher:
        base = min(_baseline(data, cipher) for _ in range(args.rounds))
        name = cipher.name.lower().replace("_", "-")
        print(f"| {name} | bare AEAD | {args.mib / base:,.0f} | 1.00× |")
        for step, how in ((SDK_CHUNK, "2 KiB chunks (the SDK's)"), (1 << 20, "1 MiB chunks")):
            ours = min(_scheme(data, cipher, step) for _ in range(args.rounds))
            print(f"| {name} | scheme v1, {how} | {args.mib / ours:,.0f} | {ours / base:.2f}× |")


if __name__ == "__main__":
    main()
