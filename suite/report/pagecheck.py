"""A headless-Chromium check of an HTML report page.

The page is rendered as a browser would show it, and the check fails on what a reader would
see broken: images that are missing, cannot be decoded or are shown at zero size; content
that overflows the page horizontally or is cut by its container; script errors (uncaught
exceptions, unhandled promise rejections, ``console.error``) and resources that fail to load.

How: a copy of the page gets a small checker ``<script>`` as its very first element, so that
its error handlers are in place before any script of the page runs. After ``load`` (plus a
second of virtual time, for scripts that settle late) it inspects the layout and writes its
findings as JSON into a hidden ``<pre>``; Chromium's ``--dump-dom`` hands the DOM back. The
original page is never modified. Embedded ``data:`` images are also checked byte by byte,
since Chromium shows a truncated PNG in part without any error. Needs only a Chromium binary,
no Python packages.

Run ``python -m twsbench.report.pagecheck reports/<run_id>/index.html``: exit status 0 when every
page is fine, 1 when any page has a problem (each printed on its own line), 2 when a page or the
browser is missing.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import html
import json
import logging
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path

log = logging.getLogger(__name__)

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
ENV_BROWSER = "TWSBENCH_CHROMIUM"
MARKER = "twsbench-pagecheck"
HEIGHT = 900  # px; the window height, which only matters for what is on screen at first
VIRTUAL_TIME_MS = 10_000  # virtual time the page may run for before the DOM is dumped

# The checker. Handlers first (capture phase on window sees script errors and failed
# resources alike); the layout is read one virtual second after load. Late errors re-render
# the result, so an error up to the end of the virtual-time budget is still reported.
CHECKER = r"""
(() => {
  const MARKER = "__MARKER__", NAME = __NAME__, OFFSET = __OFFSET__;
  const errors = [];
  let result = null;
  const text = (s, n = 60) => {
    s = String(s).replace(/\s+/g, " ").trim();
    return s.length > n ? s.slice(0, n - 1) + "\u2026" : s;
  };
  const headingBefore = (el) => {
    let last = null;
    for (const h of document.querySelectorAll("h1,h2,h3,h4,h5,h6")) {
      if (h.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING) last = h;
    }
    return last ? ` under "${text(last.textContent, 40)}"` : "";
  };
  const describe = (el) => {
    const tag = el.tagName.toLowerCase();
    let s = tag + (el.id ? "#" + el.id : "");
    const src = el.getAttribute("src");
    const alt = el.getAttribute("alt");
    if (alt) s += ` "${text(alt, 40)}"`;
    else if (src !== null) s += ` src=${text(src, 40)}`;
    if (tag === "table") {
      const cap = el.querySelector("caption") || el.querySelector("tr");
      if (cap) s += ` [${text(cap.textContent, 40)}]`;
    } else if (tag === "figure") {
      const cap = el.querySelector("figcaption");
      if (cap) s += ` "${text(cap.textContent, 40)}"`;
    } else if (!["img", "svg", "canvas", "video", "pre", "body", "html"].includes(tag)) {
      if (text(el.textContent)) s += ` "${text(el.textContent, 30)}"`;
    }
    return s + headingBefore(el);
  };
  const render = () => {
    if (!result) return;
    let pre = document.getElementById(MARKER);
    if (!pre) {
      pre = document.createElement("pre");
      pre.id = MARKER;
      pre.hidden = true;
      (document.body || document.documentElement).appendChild(pre);
    }
    pre.textContent = JSON.stringify({...result, errors});
  };
  const report = (line) => { errors.push(line); render(); };

  window.addEventListener("error", (e) => {
    const t = e.target;
    if (t && t !== window && t.tagName) {
      // images present at the check are reported by it, with their box
      if (t.tagName !== "IMG" || result) report(`${describe(t)} failed to load`);
    } else {
      // the copy holds the checker's lines in front of the page's: give the page's line
      const file = e.filename && e.filename.split("/").pop();
      const where = !file ? "" : file === "page.html" ? ` (${NAME}:${e.lineno - OFFSET})`
        : ` (${text(file, 40)}:${e.lineno})`;
      report(`uncaught script error: ${text(e.message, 200)}${where}`);
    }
  }, true);
  window.addEventListener("unhandledrejection", (e) => {
    const r = e.reason;
    report(`unhandled promise rejection: ${text(r && r.message ? r.message : r, 200)}`);
  });
  document.addEventListener("securitypolicyviolation", (e) => {
    report(`blocked by the Content-Security-Policy (${e.violatedDirective}): ` +
      text(e.blockedURI || e.sample, 60));
  });
  const consoleError = console.error;
  console.error = (...args) => {
    report(`console.error: ${text(args.map(String).join(" "), 200)}`);
    return consoleError.apply(console, args);
  };

  const box = (r) => `${Math.round(r.width)}x${Math.round(r.height)} px at x=` +
    `${Math.round(r.left)}..${Math.round(r.right)}`;
  const blockParent = (el) => {
    let p = el.parentElement;
    while (p && ["inline", "contents"].includes(getComputedStyle(p).display)) {
      p = p.parentElement;
    }
    return p;
  };
  const contentBox = (el) => {
    const r = el.getBoundingClientRect(), cs = getComputedStyle(el);
    const px = (k) => parseFloat(cs[k]) || 0;
    return {left: r.left + px("borderLeftWidth") + px("paddingLeft"),
            right: r.right - px("borderRightWidth") - px("paddingRight"),
            width: r.width - px("borderLeftWidth") - px("paddingLeft")
                   - px("borderRightWidth") - px("paddingRight")};
  };
  const clipper = (el, r) => {
    // the first ancestor below <body> that hides part of el; a scroll box (overflow auto or
    // scroll) is a deliberate way to show wide content and is let be
    const hides = (v) => v === "hidden" || v === "clip";
    for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
      const cs = getComputedStyle(a);
      const ar = a.getBoundingClientRect();
      const left = ar.left + a.clientLeft, top = ar.top + a.clientTop;
      if ((hides(cs.overflowX) && (r.left < left - 1 || r.right > left + a.clientWidth + 1)) ||
          (hides(cs.overflowY) && (r.top < top - 1 || r.bottom > top + a.clientHeight + 1))) {
        return {parent: a, why: `cut by its container ${describe(a)} (overflow: ` +
          `${cs.overflowX} ${cs.overflowY}, ${a.clientWidth}x${a.clientHeight} px visible)`};
      }
    }
    return null;
  };

  const inScrollBox = (el) => {
    for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
      if (["auto", "scroll"].includes(getComputedStyle(a).overflowX)) return true;
    }
    return false;
  };

  const check = () => {
    const de = document.documentElement;
    const vw = de.clientWidth;  // the window less a vertical scrollbar: what is on screen
    const problems = [];
    const pageWidth = Math.max(de.scrollWidth, document.body ? document.body.scrollWidth : 0);
    if (pageWidth > vw) {
      // the outermost boxes that stick out, and the innermost whose content (text) does
      const out = (el) => {
        const r = el.getBoundingClientRect();
        return r.right > vw + 1 || r.left < -1;
      };
      const spills = (el) => !out(el) && getComputedStyle(el).overflowX === "visible" &&
        el.getBoundingClientRect().left + el.scrollWidth > vw + 1;
      const culprits = [];
      for (const el of document.body ? document.body.querySelectorAll("*") : []) {
        if (culprits.length >= 5) break;
        if ((out(el) && !out(el.parentElement)) ||
            (spills(el) && ![...el.children].some((c) => out(c) || spills(c)))) {
          culprits.push(`${describe(el)} ${box(el.getBoundingClientRect())}`);
        }
      }
      problems.push(`the page is ${pageWidth} px wide, wider than the ${vw}-px viewport ` +
        `(window ${window.innerWidth} px): it scrolls sideways` +
        (culprits.length ? `; overflowing: ${culprits.join("; ")}` : ""));
    }
    const items = document.querySelectorAll("img, svg, canvas, video, table, figure, pre");
    for (const el of items) {
      if (el.id === MARKER || (el.closest("svg") && el.closest("svg") !== el)) continue;
      const r = el.getBoundingClientRect();
      const why = [];
      if (el.tagName === "IMG") {
        if (!el.complete) why.push("never finished loading");
        else if (el.naturalWidth === 0) why.push("is missing or could not be decoded");
        if (r.width === 0 || r.height === 0) why.push("is displayed at zero size");
      }
      if (r.width > 0 && r.height > 0) {
        const cut = clipper(el, r);
        if (!inScrollBox(el)) {
          if (r.right > vw + 1 || r.left < -1) why.push(`does not fit the ${vw}-px viewport`);
          const p = blockParent(el);
          if (p && p !== de && !(cut && cut.parent === p)) {
            const c = contentBox(p);
            if (r.right > c.right + 1 || r.left < c.left - 1) {
              why.push(`overflows its container ${describe(p)} (${Math.round(c.width)} px wide)`);
            }
          }
        }
        if (cut) why.push(cut.why);
      }
      if (why.length) problems.push(`${describe(el)} ${box(r)}: ${why.join("; ")}`);
    }
    result = {viewport: vw, window: window.innerWidth, images: document.images.length,
              problems};
    render();
  };
  window.addEventListener("load", () => setTimeout(check, 1000));
})();
"""

_DOCTYPE = re.compile(rb"^(\xef\xbb\xbf)?\s*(<!--.*?-->\s*)*(<!doctype[^>]*>)?", re.I | re.S)
_RESULT = re.compile(r'<pre id="' + MARKER + r'"[^>]*>(.*?)</pre>', re.S)


class BrowserNotFound(RuntimeError):
    """No Chromium binary was found."""


def find_chromium() -> str | None:
    """The Chromium binary to use: ``$TWSBENCH_CHROMIUM`` when set, else the first of
    ``chromium``, ``chromium-browser``, ``google-chrome`` on ``PATH``; ``None`` if not found."""
    named = os.environ.get(ENV_BROWSER)
    if named:
        return shutil.which(named)
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def _browser(chromium: str | None) -> str:
    """The binary for ``chromium`` (a name or path), else :func:`find_chromium`'s."""
    if chromium:
        found = shutil.which(chromium)
        wanted = repr(chromium)
    else:
        found = find_chromium()
        named = os.environ.get(ENV_BROWSER)
        wanted = (f"${ENV_BROWSER}={named!r}" if named
                  else f"one of {', '.join(BROWSERS)} on PATH (or ${ENV_BROWSER})")
    if found is None:
        raise BrowserNotFound(f"expected a Chromium binary, {wanted}, found none")
    return found


def instrument(page: bytes, path: Path) -> bytes:
    """The page at ``path`` with the checker script as its first element (after any doctype).

    Also declares UTF-8 and, when the page sets no ``<base>`` of its own, points relative
    URLs at the page's folder, so the copy resolves them as the original does.
    """
    head = _DOCTYPE.match(page)
    cut = head.end() if head else 0
    extra = '<meta charset="utf-8">'
    if not re.search(rb"<base[\s>]", page, re.I):
        extra += f'<base href="{html.escape(path.parent.resolve().as_uri() + "/")}">'
    script = (CHECKER.replace("__MARKER__", MARKER)
              .replace("__NAME__", json.dumps(path.name).replace("<", "\\u003c")))
    inject = extra + "<script>" + script + "</script>"
    inject = inject.replace("__OFFSET__", str(inject.count("\n")))
    return page[:cut] + inject.encode() + page[cut:]


class _Images(HTMLParser):
    """Collects the ``src`` and ``alt`` of every ``<img>``."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            a = dict(attrs)
            self.images.append((a.get("src") or "", a.get("alt") or ""))


def png_problem(data: bytes) -> str | None:
    """What makes ``data`` an invalid PNG (signature, chunk bounds and CRCs, IHDR first,
    IEND last, the image data inflating to the size IHDR implies), or ``None``."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return f"expected the PNG signature, found {data[:8]!r}"
    at, chunks, idat = 8, [], []
    while at < len(data):
        if at + 12 > len(data):
            return f"chunk header cut short at byte {at} of {len(data)}"
        (size,) = struct.unpack(">I", data[at:at + 4])
        kind, body = data[at + 4:at + 8], data[at + 8:at + 8 + size]
        if len(body) < size or at + 12 + size > len(data):
            return f"{kind.decode('latin-1')} chunk cut short (the data ends at byte {len(data)})"
        (crc,) = struct.unpack(">I", data[at + 8 + size:at + 12 + size])
        if zlib.crc32(kind + body) != crc:
            return f"{kind.decode('latin-1')} chunk at byte {at}: CRC mismatch"
        chunks.append((kind, body))
        if kind == b"IDAT":
            idat.append(body)
        at += 12 + size
        if kind == b"IEND":
            break
    if not chunks or chunks[0][0] != b"IHDR" or len(chunks[0][1]) != 13:
        return "expected an IHDR chunk first"
    if chunks[-1][0] != b"IEND":
        return f"expected an IEND chunk last, found {chunks[-1][0].decode('latin-1')}"
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    inflate = zlib.decompressobj()
    try:
        raw = inflate.decompress(b"".join(idat))
    except zlib.error as e:
        return f"image data does not inflate ({e})"
    if not inflate.eof:
        return "image data cut short (the deflate stream does not end)"
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour)
    if channels and not interlace:
        size = height * (1 + (width * channels * depth + 7) // 8)
        if len(raw) != size:
            return f"image data holds {len(raw)} bytes, expected {size} for {width}x{height}"
    return None


def embedded_image_problems(page: str) -> list[str]:
    """Problems of the ``data:`` URIs in ``<img>`` tags: base64 that does not decode, and
    PNGs that do not (a browser shows a truncated PNG in part, without an error)."""
    parser = _Images()
    parser.feed(page)
    problems = []
    for src, alt in parser.images:
        header, comma, payload = src.partition(",")
        if not header.lower().startswith("data:") or ";base64" not in header.lower():
            continue
        name = f'img "{alt}"' if alt else f"img src={src[:40]}"
        try:
            data = base64.b64decode("".join(payload.split()), validate=True)
        except (binascii.Error, ValueError) as e:
            problems.append(f"{name}: the data URI is not valid base64 ({e})")
            continue
        why = png_problem(data) if header.lower().startswith("data:image/png") else None
        if why:
            problems.append(f"{name}: the embedded PNG cannot be decoded: {why}")
    return problems


def _run(cmd: list[str], timeout: float) -> tuple[int | None, str, str]:
    """Run ``cmd`` in its own process group; (exit status or None on timeout, out, err)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            errors="replace", start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # Chromium's helpers share the group
        out, err = proc.communicate()
        return None, out, err
    return proc.returncode, out, err


def check_page(path: str | os.PathLike, chromium: str | None = None, width: int = 1280,
               timeout: float = 120.0) -> list[str]:
    """Render an HTML page in headless Chromium and list what is broken on it.

    Parameters
    ----------
    path
        The HTML file. It is read, never modified; a copy with the checker is rendered.
    chromium
        The browser binary; by default :func:`find_chromium`.
    width
        Window width in px (the height is 900 px).
    timeout
        Seconds of wall time the browser may take before the check gives up.

    Returns
    -------
    list of str
        One line per problem (empty when the page is fine): an image missing, undecodable or
        at zero size; an image, table, figure, SVG, canvas, video or ``<pre>`` wider than the
        viewport, overflowing its container or cut by one (``overflow: hidden`` or ``clip``;
        a scroll box, ``overflow: auto`` or ``scroll``, is a deliberate way to show wide
        content and passes); the page scrolling sideways; a script error, unhandled
        rejection, ``console.error``, Content-Security-Policy block or resource that failed
        to load; or the checker not having run at all (or Chromium not finishing in time).

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    BrowserNotFound
        When no Chromium binary is found.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: expected an HTML file, found "
                                f"{'a directory' if path.is_dir() else 'nothing'}")
    browser = _browser(chromium)
    page = path.read_bytes()
    problems = []
    try:
        page.decode("utf-8")
    except UnicodeDecodeError as e:
        problems.append(f"the page is not valid UTF-8 (byte {e.start}: {e.reason})")
    problems += embedded_image_problems(page.decode("utf-8", errors="replace"))
    with tempfile.TemporaryDirectory(prefix="twsbench-pagecheck-") as tmp:
        copy = Path(tmp) / "page.html"
        copy.write_bytes(instrument(page, path))
        cmd = [browser, "--headless=new", "--no-sandbox", "--disable-gpu",
               "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
               "--disable-extensions", f"--user-data-dir={Path(tmp) / 'profile'}",
               f"--window-size={width},{HEIGHT}", f"--virtual-time-budget={VIRTUAL_TIME_MS}",
               "--dump-dom", copy.as_uri()]
        log.debug("running %s", " ".join(cmd))
        status, out, err = _run(cmd, timeout)
    if status is None:
        return problems + [f"Chromium did not finish rendering the page within {timeout:g} s"]
    found = _RESULT.findall(out)
    if not found:
        last = err.strip().splitlines()[-1:] if status else []
        return problems + [
            f"the page checker never reported (Chromium exit status {status}"
            + (f": {last[0][:200]}" if last else "") + "): the page did not finish loading "
            "within the virtual-time budget, navigated away, or replaced its document"]
    result = json.loads(html.unescape(found[-1]))
    return problems + result["problems"] + result["errors"]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m twsbench.report.pagecheck PATH [PATH...]``: 0 all fine, 1 problems, 2 missing."""
    parser = argparse.ArgumentParser(prog="python -m twsbench.report.pagecheck", description=__doc__
                                     .split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="HTML pages")
    parser.add_argument("--width", type=int, default=1280, help="window width in px")
    parser.add_argument("--chromium", help=f"browser binary (default: ${ENV_BROWSER}, then "
                        f"{', '.join(BROWSERS)} on PATH)")
    args = parser.parse_args(argv)
    bad = 0
    for path in args.paths:
        try:
            problems = check_page(path, args.chromium, args.width)
        except (FileNotFoundError, BrowserNotFound) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        for line in problems:
            print(f"{path}: {line}")
        if problems:
            bad += 1
        else:
            print(f"{path}: ok")
    if bad:
        print(f"{bad} of {len(args.paths)} page(s) have problems", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
