"""A real Orthanc PACS for tests, started inside a private network namespace.

Orthanc 1.10 cannot bind to loopback only, so the tests that talk to it run in a namespace of their
own (``unshare -n``, loopback brought up): the server is reachable from nowhere else.
:func:`run_in_private_network` re-runs a pytest module there; :class:`OrthancServer` starts and stops
one Orthanc (temporary configuration and storage, a test user, the DICOMweb plugin) inside it.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PACKAGES = "orthanc orthanc-dicomweb"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
IN_NAMESPACE = "VIRTUALBIOPSY_TEST_NETNS"


def orthanc_missing() -> str | None:
    """Why Orthanc cannot run here (naming the Debian packages), or None."""
    if shutil.which("Orthanc") is None or not DICOMWEB_PLUGIN.is_file():
        return f"Orthanc with its DICOMweb plugin is not installed (Debian packages: apt-get install {PACKAGES})"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot create a private network namespace (unshare -n: {probe.stderr.strip()[:100]}; needs root)"
    return None


def loopback_up() -> None:
    """Bring 'lo' up in this (new) network namespace: SIOCGIFFLAGS / SIOCSIFFLAGS, no iproute2 needed."""
    get_flags, set_flags, up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        flags = struct.unpack("16sH", fcntl.ioctl(sock, get_flags, struct.pack("16sH", b"lo", 0))[:18])[1]
        fcntl.ioctl(sock, set_flags, struct.pack("16sH", b"lo", flags | up))


def run_in_private_network(module: Path, timeout_s: float = 900) -> subprocess.CompletedProcess:
    """Run the pytest ``module`` in a new network namespace (where only loopback exists)."""
    environment = dict(os.environ, **{IN_NAMESPACE: "1"})
    code = ("import sys, orthanc, pytest; orthanc.loopback_up(); "
            f"sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '-o', 'addopts=', {str(module)!r}]))")
    return subprocess.run(["unshare", "-n", sys.executable, "-c", code], cwd=Path(__file__).parent,
                          env=environment, capture_output=True, text=True, timeout=timeout_s)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OrthancServer:
    """One Orthanc with a temporary configuration and storage; use as a context manager."""

    user, password, aet = "radiologist", "s3cret-test", "ORTHANCTEST"

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.http_port, self.dicom_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}/dicom-web"
        self.ae = f"127.0.0.1:{self.dicom_port}:{self.aet}"
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> OrthancServer:
        storage = self.folder / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        configuration = {
            "Name": "virtualbiopsy-test", "StorageDirectory": str(storage), "IndexDirectory": str(storage),
            "HttpPort": self.http_port, "DicomPort": self.dicom_port, "DicomAet": self.aet,
            "RemoteAccessAllowed": True, "AuthenticationEnabled": True,
            "RegisteredUsers": {self.user: self.password},
            "Plugins": [str(DICOMWEB_PLUGIN)], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "DicomAlwaysAllowFind": True, "DicomAlwaysAllowGet": True, "DicomAlwaysAllowStore": True,
            "DicomCheckCalledAet": False, "StableAge": 1,
        }
        path = self.folder / "orthanc.json"
        path.write_text(json.dumps(configuration))
        log = open(self.folder / "orthanc.log", "w")  # noqa: SIM115 - kept open for the server's lifetime
        self._process = subprocess.Popen(["Orthanc", str(path)], stdout=log, stderr=subprocess.STDOUT)
        self._log = log
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                self.rest("/system")
                return self
            if self._process.poll() is not None:
                break
            time.sleep(0.05)
        self.__exit__(None, None, None)
        raise RuntimeError(f"Orthanc did not start: {(self.folder / 'orthanc.log').read_text()[-2000:]}")

    def rest(self, path: str):
        """GET on Orthanc's own REST API (as the test user), parsed JSON."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}")
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=5) as answer:
            return json.loads(answer.read())

    def credentials(self) -> dict[str, str]:
        return {"VIRTUALBIOPSY_PACS_USER": self.user, "VIRTUALBIOPSY_PACS_PASSWORD": self.password}

    def __exit__(self, *exc) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._log.close()
