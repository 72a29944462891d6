#!/usr/bin/env bash
# Browser check of the report and the session viewer (tests/test_viewer_browser.py):
# Debian's Chromium, headless, driven by Playwright for Python; the viewer on 127.0.0.1.
#
# Uses the demo run (runs/creator_scifi-demo, from `make demo`) when it exists, else writes a
# small generated run to runs/sample. Leaves, as CI artifacts:
#   <run>/report.html                   the run's report
#   <run>/screenshots/report.png        the whole report page; report-top.png its first screen
#   <run>/screenshots/viewer.png        a session replayed, at a slate after which the user wrote an instruction
#   <run>/screenshots/viewer-end.png    the same session's last step
# Environment: RECOWORLD_BROWSER_RUN (a run folder to use), RECOWORLD_SCREENSHOTS (where the PNGs go).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  echo "== installing Debian's chromium =="
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi
/usr/bin/chromium --version

test -x .venv/bin/python || make install
.venv/bin/python -c "import playwright" 2>/dev/null || { echo "playwright is missing from .venv: make install (it is in the [test] extra)"; exit 1; }

RUN="${RECOWORLD_BROWSER_RUN:-}"
if [ -z "$RUN" ]; then
  if [ -f runs/creator_scifi-demo/manifest.json ]; then
    RUN=runs/creator_scifi-demo
  else
    echo "== no demo run: writing a small generated run to runs/sample =="
    .venv/bin/python -m recoworld.report.sample runs
    RUN=runs/sample
  fi
fi
SHOTS="${RECOWORLD_SCREENSHOTS:-$RUN/screenshots}"
rm -f "$SHOTS"/*.png

echo "== recoworld report $RUN =="
.venv/bin/recoworld report "$RUN"

echo "== browser tests on $RUN =="
# RECOWORLD_REQUIRE_BROWSER turns the tests' skip (no Chromium) into a failure here.
RECOWORLD_REQUIRE_BROWSER=1 RECOWORLD_BROWSER_RUN="$RUN" RECOWORLD_SCREENSHOTS="$SHOTS" \
  .venv/bin/python -m pytest -q -ra -m browser tests/test_viewer_browser.py

for png in report.png report-top.png viewer.png viewer-end.png; do
  test -s "$SHOTS/$png" || { echo "missing screenshot $SHOTS/$png"; exit 1; }
done
echo "screenshots: $(ls "$SHOTS"/*.png | tr '\n' ' ')"
