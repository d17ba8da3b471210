"""SFTP upload + verification vs OpenSSH ``scp`` + remote ``sha256sum``, side by side.

Starts its own OpenSSH sshd on 127.0.0.1 (the test fixture's code,
``tests.servers.sshd.running_sshd``; needs root), writes an incompressible test file
(1 GiB by default), then alternates, round after round:

* baseline: ``scp FILE host:dir/`` followed by ``ssh host sha256sum dir/FILE``
  (OpenSSH defaults, fresh connection each, as the legacy job does);
* tableship: a fresh ``SFTPDestination`` doing exactly what the pipeline's upload and
  verify phases do: ``put`` (temp name, pipelined writes, fsync, posix-rename) and
  ``sha256`` (remote ``sha256sum``, the ``auto`` choice for this account).

Prints every round, the median of each, and the ratio (issue 3's bar: <= 1.3).
``--read-back`` also times the read-back verification (accounts without a shell);
``--asyncssh-only`` also times the upload on asyncssh alone (no OpenSSH client);
``--paramiko`` also times paramiko with pipelined writes (the alternative not chosen).

Usage: python bench/bench_sftp.py [--size-mib 1024] [--rounds 3] [--read-back] [--asyncssh-only] [--paramiko]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.servers.sshd import running_sshd  # noqa: E402

import tableship.destinations.sftp.openssh as sftp_mod  # noqa: E402
from tableship.config.models import SFTPDestination as SFTPConfig  # noqa: E402
from tableship.destinations.sftp import SFTPDestination  # noqa: E402


def make_file(path: Path, size: int) -> None:
    chunk = os.urandom(8 << 20)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            f.write(chunk[: min(left, len(chunk))])
            left -= len(chunk)
            # vary the chunk so nothing repeats at a fixed period
            chunk = chunk[1:] + chunk[:1]


def ssh_opts(s) -> list[str]:
    return [
        "-i",
        str(s.client_key),
        "-o",
        f"UserKnownHostsFile={s.known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-F",
        "/dev/null",
    ]


def baseline(s, local: Path, remote_dir: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        ["scp", "-q", *ssh_opts(s), "-P", str(s.port), str(local), f"{s.user}@{s.host}:{remote_dir}/"],
        check=True,
    )
    out = subprocess.run(
        [
            "ssh",
            *ssh_opts(s),
            "-p",
            str(s.port),
            f"{s.user}@{s.host}",
            "sha256sum",
            f"{remote_dir}/{local.name}",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    dt = time.perf_counter() - t0
    assert len(out.split()[0]) == 64
    return dt


def tableship(
    s, local: Path, verify: str = "auto", openssh: bool = True
) -> tuple[float, float, float, str, str]:
    sftp_mod.OPENSSH_MIN_BYTES = 8 << 20 if openssh else 1 << 62
    cfg = SFTPConfig(
        type="sftp",
        host=s.host,
        port=s.port,
        user=s.user,
        key_file=s.client_key,
        known_hosts=s.known_hosts,
        path=str(s.root_dir),
        verify=verify,
    )
    dest = SFTPDestination("bench", cfg)
    try:
        t0 = time.perf_counter()
        dest.put(local, f"tableship/{local.name}", "bench")
        t1 = time.perf_counter()
        digest = dest.sha256(f"tableship/{local.name}")
        t2 = time.perf_counter()
    finally:
        dest.close()
    assert digest and len(digest.hex) == 64
    return t2 - t0, t1 - t0, t2 - t1, digest.method, dest.cipher or "?"


def paramiko_put(s, local: Path) -> float:
    import paramiko

    t0 = time.perf_counter()
    t = paramiko.Transport((s.host, s.port), default_window_size=64 << 20, default_max_packet_size=256 << 10)
    t.get_security_options().ciphers = ("aes128-gcm@openssh.com",)
    t.start_client()
    t.auth_publickey(s.user, paramiko.Ed25519Key.from_private_key_file(str(s.client_key)))
    sftp = paramiko.SFTPClient.from_transport(t, window_size=64 << 20, max_packet_size=256 << 10)
    with open(local, "rb") as src, sftp.open(f"{s.root_dir}/paramiko.bin", "wb") as f:
        f.set_pipelined(True)
        while block := src.read(256 << 10):
            f.write(block)
    t.close()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--read-back", action="store_true", help="also time verify = read-back")
    ap.add_argument(
        "--asyncssh-only",
        action="store_true",
        help="also time tableship with the bulk upload on asyncssh instead of OpenSSH's sftp client",
    )
    ap.add_argument(
        "--paramiko", action="store_true", help="also time a paramiko pipelined upload (no verify)"
    )
    args = ap.parse_args()
    size = args.size_mib << 20

    work = Path(tempfile.mkdtemp(prefix="tableship-bench-sftp-"))
    try:
        local = work / "archive.csv.gz"
        print(f"writing a {args.size_mib} MiB test file ...", flush=True)
        make_file(local, size)
        with running_sshd() as s:
            print(
                f"sshd on {s.host}:{s.port}; OpenSSH: "
                f"{subprocess.run(['ssh', '-V'], capture_output=True, text=True).stderr.strip()}"
            )
            base_dir = s.root_dir / "scp"
            base_dir.mkdir()
            base, ours, ups, vers, rb, pm, aso = [], [], [], [], [], [], []
            for r in range(1, args.rounds + 1):
                b = baseline(s, local, base_dir)
                (base_dir / local.name).unlink()
                t, up, ver, method, cipher = tableship(s, local)
                shutil.rmtree(s.root_dir / "tableship")
                base.append(b)
                ours.append(t)
                ups.append(up)
                vers.append(ver)
                line = (
                    f"round {r}: scp+sha256sum {b:6.2f}s   tableship {t:6.2f}s (put {up:.2f}s + "
                    f"{method} {ver:.2f}s,"
                    f" {cipher})   ratio {t / b:.2f}"
                )
                if args.read_back:
                    t_rb, _, v_rb, m_rb, _ = tableship(s, local, "read-back")
                    shutil.rmtree(s.root_dir / "tableship")
                    rb.append(t_rb)
                    line += f"   [read-back: {t_rb:.2f}s, verify {v_rb:.2f}s]"
                if args.asyncssh_only:
                    t_as, up_as, _, _, _ = tableship(s, local, openssh=False)
                    shutil.rmtree(s.root_dir / "tableship")
                    aso.append(t_as)
                    line += f"   [asyncssh only: {t_as:.2f}s, put {up_as:.2f}s]"
                if args.paramiko:
                    p = paramiko_put(s, local)
                    (s.root_dir / "paramiko.bin").unlink()
                    pm.append(p)
                    line += f"   [paramiko put only: {p:.2f}s]"
                print(line, flush=True)
            mb, mo = statistics.median(base), statistics.median(ours)
            mib_s = size / 2**20
            print()
            print(f"file                      {args.size_mib} MiB")
            print(f"scp + sha256sum (median)  {mb:.2f} s")
            print(
                f"tableship put + verify    {mo:.2f} s  (put {statistics.median(ups):.2f} s, "
                f"{mib_s / statistics.median(ups):.0f} MiB/s; verify {statistics.median(vers):.2f} s)"
            )
            if rb:
                print(f"tableship with read-back  {statistics.median(rb):.2f} s")
            if aso:
                print(f"asyncssh-only upload      {statistics.median(aso):.2f} s  (put + verify)")
            if pm:
                print(f"paramiko put only         {statistics.median(pm):.2f} s")
            ratio = mo / mb
            print(
                f"ratio (median/median)     {ratio:.2f}   (bar: <= 1.30) {'OK' if ratio <= 1.3 else 'OVER'}"
            )
            return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
