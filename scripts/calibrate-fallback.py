#!/usr/bin/env python3
"""Calibrates the fallback recogniser's two thresholds on dev data.

Input: the per-line results of `voicegate eval nlu --lines FILE` run with
`[understanding] out_of_scope = 0.0, sure = 0.0` (every fallback reading
acted on), so each line records how its first intent was reached and the
fallback's score. For any pair (out_of_scope, sure) the gate's rules give
what would have happened to that line:

  template match           -> as recorded
  fallback, score < oos    -> not understood (out of scope)
  fallback, high stakes    -> read back (or its missing detail asked)
  fallback, low, >= sure   -> runs
  fallback, low, < sure    -> "did you mean ...?" (asked, nothing runs)

Prints, per pair: in-scope handled %, out-of-scope false actions %, and the
per-intent handled share of the low-stakes intents. Usage:

  calibrate-fallback.py LINES.jsonl [--texts DATA.jsonl --split train|val]
                        [--high A,B,...] [--leeway INTENT=0.15,...]

Each line's own fields are read: `intent` is the dataset's, `ours` what ran
or was read back (written as "intent" too before e589dff, which JSON readers
took over the dataset's), `recognised` the first intent read. A high-risk
intent's `fallback_leeway` (--leeway) lowers its cut, as the gate does.
Last, the pair with the most in-scope lines handled among those with at most
--max-false-actions (default 0.5%) out-of-scope false actions.
"""
import argparse
import collections
import json

ap = argparse.ArgumentParser()
ap.add_argument("lines")
ap.add_argument("--high", default="BookTable,BookRide,OrderItem,OrderDrink")
ap.add_argument("--texts", help="the dataset file, to select a split")
ap.add_argument("--split")
ap.add_argument("--leeway", default="BookTable=0.15")
ap.add_argument("--max-false-actions", type=float, default=0.5)
args = ap.parse_args()
high = set(args.high.split(","))
leeway = {k: float(v) for k, v in (p.split("=") for p in args.leeway.split(",") if p)}

rows = [json.loads(l) for l in open(args.lines)]
if any("ours" not in r and r["verdict"] in ("handled", "wrong_action", "false_action") for r in rows):
    raise SystemExit("these lines have no \"ours\": written before e589dff; run eval nlu --lines again")
if args.split and args.texts:
    keep = collections.Counter()
    for l in open(args.texts):
        r = json.loads(l)
        if r.get("split") == args.split:
            keep[(r["text"], r["intent"])] += 1
    rows = [r for r in rows if keep[(r["text"], r["intent"])] > 0]


def outcome(r, oos, sure):
    v = r["verdict"]
    if r.get("by") != "fallback":
        return v
    score = r.get("score") or 0.0
    # What the fallback read: what ran or was read back, else the first
    # intent it proposed (an asked question).
    rec = r.get("ours") or r.get("recognised")
    cut = oos - (leeway.get(rec, 0.0) if rec in high else 0.0)
    if score < cut:
        return "not_understood"
    if rec in high:
        return v  # read back or asked: as recorded
    if score >= sure:
        return v  # ran, as recorded
    return "asked_again"


def handled(v):
    return v == "handled"


def action(v):
    return v in ("handled", "wrong_action", "false_action")


grid = [(o / 100, s / 100) for o in range(20, 80, 5) for s in range(30, 100, 5) if s >= o]
print(f"{len(rows)} lines")
print("oos   sure  in-scope handled  oos false actions")
best = []
for oos, sure in grid:
    ins = [r for r in rows if r["in_scope"]]
    outs = [r for r in rows if not r["in_scope"]]
    h = sum(outcome(r, oos, sure) == "handled" for r in ins)
    fa = sum(outcome(r, oos, sure) == "false_action" for r in outs)
    best.append((fa / max(1, len(outs)), -h / max(1, len(ins)), oos, sure))
    print(f"{oos:.2f}  {sure:.2f}  {100*h/max(1,len(ins)):6.1f}%  {100*fa/max(1,len(outs)):6.2f}%")

ok = [b for b in best if b[0] * 100 <= args.max_false_actions]
if ok:
    fa, h, oos, sure = min(ok, key=lambda b: (b[1], b[0]))
    print(f"\nmost handled with false actions <= {args.max_false_actions}%: "
          f"out_of_scope {oos:.2f}, sure {sure:.2f} ({-100*h:.1f}% handled, {100*fa:.2f}% false actions)")

LOW = ["timer", "alarm", "play_music", "change_volume", "next_song"]
print("\nper intent (handled %) and out-of-scope false actions, for chosen pairs")
for oos, sure in [(0.5, 0.6), (0.55, 0.65), (0.6, 0.65), (0.6, 0.7), (0.65, 0.7), (0.65, 0.75)]:
    cells = []
    for it in LOW:
        rs = [r for r in rows if r["intent"] == it]
        h = sum(outcome(r, oos, sure) == "handled" for r in rs)
        cells.append(f"{it} {100*h/max(1,len(rs)):.0f}%")
    outs = [r for r in rows if not r["in_scope"]]
    fa = sum(outcome(r, oos, sure) == "false_action" for r in outs)
    real_oos = [r for r in outs if r["intent"] == "oos"]
    fa_oos = sum(outcome(r, oos, sure) == "false_action" for r in real_oos)
    print(f"{oos:.2f}/{sure:.2f}: " + ", ".join(cells) + f" | false actions {100*fa/max(1,len(outs)):.2f}% (oos class {fa_oos}/{len(real_oos)})")
