"""twsbench.report.pagecheck: the headless-Chromium check of report pages.

Each deliberately broken page must yield a problem naming what broke; a good page and a page
built like ``twsbench.report.build``'s must yield none. Tests that render skip without Chromium.
"""

from __future__ import annotations

import base64
import io
import os

import pandas as pd
import pytest
from matplotlib.figure import Figure

from twsbench.report import pagecheck
from twsbench.report.pagecheck import check_page, png_problem


@pytest.fixture(scope="module")
def chromium():
    found = pagecheck.find_chromium()
    if found is None:
        pytest.skip("no Chromium found (chromium, chromium-browser, google-chrome on PATH or "
                    "$TWSBENCH_CHROMIUM); CI installs it")
    return found


def png(width_in: float = 3.0, height_in: float = 2.0, dpi: int = 50) -> bytes:
    fig = Figure(figsize=(width_in, height_in))
    ax = fig.add_subplot()
    ax.plot([0, 1, 2], [1, 0, 1], label="a line")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


PNG = png()


def img(data: bytes, alt: str, style: str = "") -> str:
    style = f' style="{style}"' if style else ""
    return f'<img alt="{alt}"{style} src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def page(body: str, head: str = "", first: str = "") -> str:
    """A page; ``first`` goes right after the doctype, before ``<html>``."""
    return (f"<!DOCTYPE html>{first}<html><head><meta charset='utf-8'><title>t</title>{head}"
            f"</head><body>{body}</body></html>")


TABLE = "<table><tr><th>model</th><th>nse</th></tr><tr><td>mascon</td><td>0.9</td></tr></table>"
GOOD = page(f"<h1>run</h1><p>text</p>{TABLE}<figure>{img(PNG, 'fig')}"
            "<figcaption>fig</figcaption></figure><script>document.title = 'ok'</script>")


def write(tmp_path, text: str, name: str = "index.html"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_good_page_passes_and_is_left_untouched(chromium, tmp_path):
    path = write(tmp_path, GOOD)
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    assert check_page(path, chromium) == []
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    assert [p.name for p in tmp_path.iterdir()] == ["index.html"]


# (page, words every problem line about it must show between them)
BROKEN = {
    "broken base64 image": (page('<img alt="broken" src="data:image/png;base64,@@@">'),
                            ['img "broken"', "not valid base64", "could not be decoded"]),
    "not-a-PNG image": (page(img(b"this is not a PNG", "junk")),
                        ['img "junk"', "PNG signature", "could not be decoded"]),
    "truncated PNG": (page(img(PNG[: len(PNG) // 2], "half")),
                      ['img "half"', "embedded PNG cannot be decoded", "cut short"]),
    "missing image file": (page('<img alt="gone" src="figures/gone.png">'),
                           ['img "gone"', "missing or could not be decoded"]),
    "image wider than the viewport": (page(img(PNG, "wide", "width:3000px")),
                                      ['img "wide"', "does not fit the", "scrolls sideways"]),
    "image at zero size": (page(img(PNG, "tiny", "width:0")),
                           ['img "tiny"', "zero size"]),
    "image cut by its container": (
        page(f'<div style="width:100px;height:50px;overflow:hidden">{img(PNG, "cut")}</div>'),
        ['img "cut"', "cut by its container div", "overflow: hidden"]),
    "table wider than the viewport": (
        page('<h2>Scores</h2><table style="width:3000px"><tr><th>model</th></tr></table>'),
        ["table [model] under \"Scores\"", "does not fit the", "scrolls sideways"]),
    "text wider than the viewport": (page("<p>" + "x" * 500 + "</p>"),
                                     ["scrolls sideways", 'p "xxx']),
    "throwing script": (page("<p>x</p><script>throw new Error('x')</script>"),
                        ["uncaught script error", "Error: x", "(index.html:1)"]),
    "throwing script before the html element": (
        page("<p>x</p>", first="<script>throw new Error('first')</script>"),
        ["uncaught script error", "Error: first"]),
    "syntax error in the head": (page("<p>x</p>", head="<script>var = ;</script>"),
                                 ["uncaught script error", "SyntaxError"]),
    "unhandled rejection": (page("<script>Promise.reject(new Error('nope'))</script>"),
                            ["unhandled promise rejection", "nope"]),
    "console.error": (page("<script>console.error('bad thing')</script>"),
                      ["console.error", "bad thing"]),
    "late error": (page("<script>setTimeout(() => { throw new Error('late') }, 5000)</script>"),
                   ["uncaught script error", "late"]),
    "page that navigates away": (page("<script>location.replace('about:blank')</script>"),
                                 ["checker never reported"]),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_page_is_caught(chromium, tmp_path, name):
    text, words = BROKEN[name]
    problems = check_page(write(tmp_path, text), chromium)
    assert problems, f"{name}: no problem found"
    joined = "\n".join(problems)
    for word in words:
        assert word in joined, f"{name}: {word!r} not in {problems}"


def report_like_page() -> str:
    """A page put together as ``twsbench.report.build.build_report`` does: its style, a summary
    list, tables written by pandas, and figures embedded as base64 PNGs (one as wide as a map)."""
    board = pd.DataFrame({"model": ["bilinear", "mascon", "wghm_anomaly"], "rank": [1, 2, 3],
                          "nse_fine_truth": [0.79, 0.77, 0.21], "kge_fine_truth": [0.75, 0.74,
                          0.28], "rmse_fine_truth": [92.7, 96.7, 159.6], "seconds": [1e-3, 5e-4,
                          1.2e-4]})
    body = ["<h1>twsbench run <code>0123456789ab</code></h1><ul><li>domain: bbox</li></ul>",
            "<h2>Leaderboard</h2><p>Ranked by nse_fine_truth.</p>",
            board.to_html(index=False, border=0), "<h2>Figures</h2>"]
    for name, data in (("leaderboard.png", PNG), ("map.png", png(14.4, 6.0, 80))):
        body.append(f'<figure><img alt="{name}" src="data:image/png;base64,'
                    f'{base64.b64encode(data).decode()}"><figcaption>{name}</figcaption></figure>')
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;font-size:13px}td,th{padding:3px 8px;"
             "border-bottom:1px solid #ddd;text-align:right}img{max-width:100%}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>twsbench run</title>"
            f"<style>{style}</style></head><body>" + "\n".join(body) + "</body></html>")


def test_report_like_page_passes(chromium, tmp_path):
    assert check_page(write(tmp_path, report_like_page()), chromium) == []


def test_wide_table_in_a_scroll_box_passes(chromium, tmp_path):
    # overflow-x: auto is a deliberate way to show a wide table; hidden is not
    table = '<table style="width:3000px"><tr><th>model</th></tr></table>'
    path = write(tmp_path, page(f'<div style="overflow-x:auto">{table}</div>'))
    assert check_page(path, chromium) == []
    path = write(tmp_path, page(f'<div style="overflow-x:hidden">{table}</div>'))
    assert any("cut by its container div" in p for p in check_page(path, chromium))


def test_narrow_window_is_caught(chromium, tmp_path):
    path = write(tmp_path, page(img(PNG, "fixed", "width:600px")))
    assert check_page(path, chromium) == []
    assert any("does not fit the" in p for p in check_page(path, chromium, width=400))


def test_command_line_exit_status(chromium, tmp_path, capsys):
    good = write(tmp_path, GOOD, "good.html")
    bad = write(tmp_path, page("<script>throw new Error('x')</script>"), "bad.html")
    assert pagecheck.main([str(good)]) == 0
    assert pagecheck.main([str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{good}: ok" in out and f"{bad}: uncaught script error" in out


def test_command_line_missing_page_or_browser(tmp_path, capsys, monkeypatch):
    assert pagecheck.main([str(tmp_path / "nope.html")]) == 2
    err = capsys.readouterr().err
    assert "nope.html: expected an HTML file, found nothing" in err
    monkeypatch.setenv(pagecheck.ENV_BROWSER, "no-such-browser")
    assert pagecheck.main([str(write(tmp_path, GOOD))]) == 2
    err = capsys.readouterr().err
    assert "expected a Chromium binary" in err and "no-such-browser" in err
    assert len(err.strip().splitlines()) == 1


def test_png_problem():
    assert png_problem(PNG) is None
    assert "signature" in png_problem(b"GIF89a")
    assert "cut short" in png_problem(PNG[:-30])
    corrupt = bytearray(PNG)
    corrupt[60] ^= 0xFF
    assert "CRC mismatch" in png_problem(bytes(corrupt))


def test_checker_is_injected_after_the_doctype(tmp_path):
    path = write(tmp_path, GOOD)
    copy = pagecheck.instrument(path.read_bytes(), path).decode()
    assert copy.startswith("<!DOCTYPE html><meta charset=\"utf-8\"><base href=")
    assert copy.index("<script>") < copy.index("<html>")
    assert os.fspath(tmp_path.resolve().as_uri()) in copy
