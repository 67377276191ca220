"""``virtualbiopsy view`` keeps a study to this machine and to whoever holds the URL: loopback only by default,
a per-run secret without which no client connects; refused studies and ``--out`` folders write nothing; unsaved
edits survive the server and are offered back to the next view of the same study."""

from __future__ import annotations

import socket

import pytest
from refusals import CliCase, assert_cli_refuses
from viewer_harness import Viewer, require_browser

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def study_folder(sample_study_folder):
    return sample_study_folder(2)


def _other_address() -> str | None:
    """An address of this machine that is not loopback, if it has one."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.254.254.254", 1))  # no packet is sent: this only picks the outgoing interface
        address = probe.getsockname()[0]
    except OSError:
        address = None
    finally:
        probe.close()
    return None if not address or address.startswith("127.") else address


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _page_connects(viewer, url: str, wait_ms: int = 12_000) -> bool:
    page = viewer.browser.new_page()
    try:
        page.goto(url)
        page.wait_for_selector("#vb-segment", timeout=wait_ms)
        return True
    except Exception:  # noqa: BLE001 - a timeout is the answer
        return False
    finally:
        page.close()


@pytest.fixture(scope="module")
def viewer(study_folder, tmp_path_factory):
    require_browser()
    running = Viewer([study_folder, "--autosave-every", 0], tmp_path_factory.mktemp("review") / "out", "view_security")
    running.open()
    running.page.wait_for_selector("#vb-segment", timeout=60_000)
    yield running
    running.close()


def test_the_printed_url_carries_a_secret_and_a_client_without_it_cannot_connect(viewer):
    assert "secret=" in viewer.url and len(viewer.url.split("secret=")[1]) >= 24
    base = viewer.url.split("?")[0]
    assert not _page_connects(viewer, base)
    assert not _page_connects(viewer, base + "?secret=wslink-secret")  # wslink's default key
    assert not _page_connects(viewer, viewer.url[:-1] + ("A" if viewer.url[-1] != "A" else "B"))
    assert _page_connects(viewer, viewer.url)


def test_the_server_listens_on_loopback_only(viewer):
    assert _reachable("127.0.0.1", viewer.port)
    other = _other_address()
    if other is None:
        pytest.skip("this machine has no address but loopback; nothing else to try")
    assert not _reachable(other, viewer.port)


def test_another_host_is_listened_on_only_when_asked_and_with_a_warning(study_folder, tmp_path):
    require_browser()
    other = _other_address()
    if other is None:
        pytest.skip("this machine has no address but loopback; --host cannot be tried")
    running = Viewer([study_folder, "--host", "0.0.0.0"], tmp_path / "out", "view_other_host")
    try:
        assert any("warning: listening on 0.0.0.0" in line for line in running.lines)
        assert _reachable(other, running.port)
    finally:
        running.close()


def test_unsaved_edits_are_autosaved_and_offered_back_by_the_next_view(study_folder, tmp_path):
    require_browser()
    out = tmp_path / "out"
    first = Viewer([study_folder, "--autosave-every", 0], out, "view_autosave")
    try:
        page = first.open()
        page.wait_for_selector("#vb-segment", timeout=60_000)
        page.click("#vb-segment")
        first.wait_idle(240)
        page.wait_for_selector("#vb-ai-summary")
        page.click("#vb-start-correcting")
        first.wait_idle()
        page.click("#vb-effect-islands")
        page.click("#vb-keep-largest")
        first.wait_idle()
        page.click("#vb-effect-threshold")
        page.click("#vb-apply-threshold")  # the default range: the brightest quarter of the image
        first.wait_idle()
        assert page.inner_text("#vb-error") == ""
        edited = int(first.settled_text("#vb-corrected-voxels"))
        first.shot("edited, not saved")
    finally:
        first.close()  # SIGTERM: the server keeps the edits in the autosave
    assert edited == first.autosaved_voxels(study_folder / "t2w.nrrd")
    assert not (out / "corrected.seg.nrrd").exists()

    second = Viewer([study_folder], out, "view_autosave_restored")
    try:
        page = second.open()
        page.wait_for_selector("#vb-autosave", timeout=60_000)
        assert "unsaved corrections" in page.inner_text("#vb-autosave")
        page.click("#vb-restore")
        second.wait_idle()
        assert page.inner_text("#vb-error") == ""
        assert int(page.inner_text("#vb-corrected-voxels")) == edited
        second.shot("restored")
        page.click("#vb-save")
        second.wait_idle()
        assert (out / "corrected.seg.nrrd").is_file()
        assert not list((out / ".autosave").glob("*/state.json"))  # saved: nothing left to offer
    finally:
        second.close()


def test_any_secret_reaches_trame_intact_even_one_beginning_with_a_dash():
    pytest.importorskip("trame_slicer", reason="Python package 'trame-slicer' is not installed in .venv")
    from trame.app import get_server

    from virtualbiopsy_web.server import trame_arguments

    parser = get_server("secret-check", client_type="vue3").cli
    for secret in ("-Zx9_abc", "--authKey", "plain-Secret_123"):
        options = parser.parse_known_args(trame_arguments("127.0.0.1", 0, secret))[0]
        assert (options.authKey, options.host, options.port, options.timeout) == (secret, "127.0.0.1", 0, 0)


def _corrupt_study(workspace):
    folder = workspace / "study"
    folder.mkdir()
    (folder / "t2w.nrrd").write_text("NRRD0004\ntype: short\n")
    return [folder]


def _busy_out(workspace):
    (workspace / "busy").mkdir()
    (workspace / "busy" / "notes.txt").write_text("a colleague's files")
    return ["--demo", "--out", workspace / "busy"]


REFUSALS = [
    CliCase("no study", lambda w: ["view", "--out", w / "out"], ("study",)),
    CliCase("two studies", lambda w: ["view", "--demo", "--scene", w / "a.mrb", "--out", w / "out"], ("one study",)),
    CliCase("missing folder", lambda w: ["view", w / "absent", "--out", w / "out"], ("absent",)),
    CliCase("corrupt image", lambda w: ["view", *_corrupt_study(w), "--out", w / "out"], ("t2w.nrrd",)),
    CliCase("out holds other files", lambda w: ["view", *_busy_out(w)], ("busy", "view")),
    CliCase("bad port", lambda w: ["view", "--demo", "--port", "70000", "--out", w / "out"], ("port",)),
    CliCase("missing model", lambda w: ["view", "--demo", "--model", w / "absent.zip", "--out", w / "out"],
            ("absent.zip",)),
]


@pytest.mark.parametrize("case", REFUSALS, ids=[c.id for c in REFUSALS])
def test_a_refused_view_prints_one_line_and_writes_nothing(case, tmp_path, capsys, monkeypatch):
    pytest.importorskip("trame_slicer", reason="Python package 'trame-slicer' is not installed in .venv")
    monkeypatch.chdir(tmp_path)
    assert_cli_refuses(case, tmp_path, capsys)
