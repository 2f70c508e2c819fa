#!/usr/bin/env python3
"""Time hassil (Home Assistant's intent matcher) on the HA English test sentences.

This is the reference half of scripts/bench-intents.sh: it loads the sentence
templates of the Home Assistant intents repository into hassil, builds the slot
lists from the test fixtures, then times `hassil.recognize` on every sentence of
every test file and prints one JSON object on stdout.

Usage:
    python bench/hassil_bench.py --sentences DATA/sentences/en \\
        --tests DATA/tests/en --repeat 20

Input layout (as in the intents repository):

* `sentences/en/*.yaml`: `{language, intents: {Name: {data: [...]}}, lists,
  expansion_rules, skip_words, ...}`; all files are merged into one dict.
* `sentences/en/<IntentName>/*.yaml`: the newer per-intent layout: a top-level
  `data: [...]` block whose intent is the directory name. Each is wrapped as
  `{intents: {<IntentName>: {data: [...]}}}` before merging.
* `tests/en/_fixtures.yaml`: floors, areas and entities for the slot lists.
* `tests/en/*.yaml`: `tests: [{sentences: [...], intent: {name, context?,
  slots?}}]`. The `intent.context` dict is passed as the intent context.
* A sentence block that uses an expansion rule defined nowhere (the snapshot
  in shared/data has `<percent>` in HassLightSet/name_brightness.yaml) is
  dropped with a warning and listed under `dropped_blocks`: hassil would
  otherwise raise MissingRuleError for every sentence that reaches it.
* `tests/en/<IntentName>/*.yaml`: tests that declare their own `areas`,
  `floors` and `entities` (entities with a `domain` instead of an `id`); when a
  file declares any of them, its sentences are matched against slot lists built
  from those instead of `_fixtures.yaml`.

Output keys: engine, hassil_version, sentences, load_ms (YAML reading and
parsing, `Intents.from_dict`, parsing every template, which hassil otherwise
does lazily on first use, and building the fixture slot lists),
median_us_per_sentence (median over sentences of each sentence's median time),
mean_us_per_sentence (mean of those per-sentence medians), recognized (number
of sentences for which `recognize` returned a result), plus extra details:
expected_intent (results naming the intent the test expects), errors, the
dropped blocks, first_pass_ms (the untimed warm-up pass), the slowest sentence.
Progress and warnings go to stderr.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

import yaml
from hassil.recognize import recognize_best

import hassil
import hassil.errors
from hassil.util import merge_dict

FIXTURES_NAME = "_fixtures.yaml"


def log(message: str) -> None:
    print(f"[hassil_bench] {message}", file=sys.stderr)


def yaml_files(root: Path) -> List[Path]:
    """The YAML files directly in `root`, in a stable order.

    Home Assistant's own test runner reads `sentences/<lang>/*.yaml` and
    `tests/<lang>/*.yaml` only (the per-intent sub-folders are a different
    format used by other tooling), and so does voicegate's suite runner, so
    both engines get the same templates and the same sentences.
    """
    return sorted(p for p in root.glob("*.yaml") if p.is_file())


# libyaml's loader when PyYAML was built with it: it is what a deployment
# would use, and it keeps the YAML share of load_ms from dominating.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path) -> Any:
    with path.open("r", encoding="utf-8") as handle:
        return yaml.load(handle, Loader=YAML_LOADER)


def sentence_dict(path: Path, sentences_root: Path, data: Dict[str, Any]) -> Dict[str, Any]:
    """Bring a sentence file into hassil's `Intents.from_dict` shape."""
    relative = path.relative_to(sentences_root)
    if len(relative.parts) > 1 and "intents" not in data and "data" in data:
        # Per-intent directory layout: the directory names the intent.
        intent_name = relative.parts[0]
        wrapped = {key: value for key, value in data.items() if key != "data"}
        wrapped["intents"] = {intent_name: {"data": data["data"]}}
        return wrapped
    return data


def rule_names(expression: hassil.Expression) -> Iterable[str]:
    """Names of the expansion rules an expression refers to directly."""
    if isinstance(expression, hassil.RuleReference):
        yield expression.rule_name
    elif isinstance(expression, hassil.Group):
        for item in expression.items:
            yield from rule_names(item)


def missing_rules(
    sentences: Iterable[hassil.Sentence],
    local_rules: Dict[str, hassil.Sentence],
    global_rules: Dict[str, hassil.Sentence],
) -> List[str]:
    """Rules referred to (directly or through other rules) but defined nowhere."""
    missing: List[str] = []
    seen = set()
    pending = [name for sentence in sentences for name in rule_names(sentence.expression)]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        body = local_rules.get(name) or global_rules.get(name)
        if body is None:
            missing.append(name)
        else:
            pending.extend(rule_names(body.expression))
    return sorted(missing)


def drop_unresolvable_blocks(intents: hassil.Intents) -> List[str]:
    """Remove sentence blocks that use an undefined expansion rule.

    hassil raises MissingRuleError from `recognize` as soon as it reaches such a
    block, which aborts the match for *every* sentence that gets that far. The
    block cannot match anything anyway, so it is dropped (and reported) to keep
    the rest of the set measurable.
    """
    dropped: List[str] = []
    for intent in intents.intents.values():
        kept = []
        for index, data in enumerate(intent.data):
            missing = missing_rules(data.sentences, data.expansion_rules, intents.expansion_rules)
            if missing:
                refs = ", ".join(f"<{name}>" for name in missing)
                dropped.append(f"{intent.name} block {index}: undefined {refs}")
            else:
                kept.append(data)
        intent.data = kept
    return dropped


def load_intents(sentences_root: Path) -> Tuple[hassil.Intents, Dict[str, float], int, List[str]]:
    """Load and merge every sentence file; force hassil to parse all templates."""
    t0 = time.perf_counter_ns()
    merged: Dict[str, Any] = {}
    files = yaml_files(sentences_root)
    for path in files:
        data = read_yaml(path)
        if not isinstance(data, dict):
            log(f"skipping {path}: not a mapping")
            continue
        merge_dict(merged, sentence_dict(path, sentences_root, data))
    t1 = time.perf_counter_ns()

    intents = hassil.Intents.from_dict(merged)
    templates = 0
    for intent in intents.intents.values():
        for data in intent.data:
            # `IntentData.sentences` is a cached property: touching it parses
            # the templates now rather than during the first timed match.
            templates += len(data.sentences)
    dropped = drop_unresolvable_blocks(intents)
    t2 = time.perf_counter_ns()

    timings = {"yaml_ms": (t1 - t0) / 1e6, "build_ms": (t2 - t1) / 1e6}
    return intents, timings, templates, dropped


def entity_names(entities: Iterable[Dict[str, Any]]) -> List[Tuple[str, str, Dict[str, Any]]]:
    """(text, value, context) tuples for the `name` list.

    The context carries the entity's domain (the prefix of its id, or its
    `domain` key) and its attributes, which is what `requires_context` and
    `excludes_context` are checked against. Names that are templates, such as
    "Trader Joe[']s", contribute one value per spelling they can produce.
    """
    tuples: List[Tuple[str, str, Dict[str, Any]]] = []
    for entity in entities:
        name = entity["name"]
        if "id" in entity:
            domain = str(entity["id"]).split(".", 1)[0]
        else:
            domain = entity.get("domain", "")
        context: Dict[str, Any] = {"domain": domain}
        context.update(entity.get("attributes") or {})

        if hassil.is_template(name):
            expression = hassil.parse_sentence(name).expression
            for spelling in hassil.sample_expression(expression):
                tuples.append((spelling, spelling, context))
        else:
            tuples.append((name, name, context))
    return tuples


def build_slot_lists(fixtures: Dict[str, Any]) -> Dict[str, hassil.SlotList]:
    areas = [area["name"] for area in fixtures.get("areas") or []]
    floors = [floor["name"] for floor in fixtures.get("floors") or []]
    names = entity_names(fixtures.get("entities") or [])
    return {
        "area": hassil.TextSlotList.from_strings(areas, name="area"),
        "floor": hassil.TextSlotList.from_strings(floors, name="floor"),
        "name": hassil.TextSlotList.from_tuples(names, allow_template=False, name="name"),
    }


class Case:
    """One test sentence with what it is matched with."""

    __slots__ = ("text", "source", "context", "slot_lists", "expected_intent")

    def __init__(
        self,
        text: str,
        source: str,
        context: Optional[Dict[str, Any]],
        slot_lists: Dict[str, hassil.SlotList],
        expected_intent: Optional[str],
    ) -> None:
        self.text = text
        self.source = source
        self.context = context
        self.slot_lists = slot_lists
        self.expected_intent = expected_intent


def load_cases(tests_root: Path, global_lists: Dict[str, hassil.SlotList]) -> List[Case]:
    cases: List[Case] = []
    for path in yaml_files(tests_root):
        if path.name == FIXTURES_NAME:
            continue
        data = read_yaml(path)
        if not isinstance(data, dict):
            log(f"skipping {path}: not a mapping")
            continue
        slot_lists = global_lists
        if any(key in data for key in ("areas", "floors", "entities")):
            slot_lists = build_slot_lists(data)
        relative = path.relative_to(tests_root)
        source = str(relative)
        # Per-intent directories name the intent; flat files say it per test.
        dir_intent = relative.parts[0] if len(relative.parts) > 1 else None
        for test in data.get("tests") or []:
            intent = test.get("intent") or {}
            context = intent.get("context")
            expected = intent.get("name", dir_intent)
            for sentence in test.get("sentences") or []:
                cases.append(Case(str(sentence), source, context, slot_lists, expected))
    return cases


def recognize(case: Case, intents: hassil.Intents) -> Optional[hassil.RecognizeResult]:
    # What Home Assistant's test runner calls (and what voicegate's
    # `--policy hassil` reproduces): every match is found, then the best kept.
    return recognize_best(
        case.text,
        intents,
        slot_lists=case.slot_lists,
        intent_context=case.context,
        best_slot_name="name",
    )


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=Path, required=True, help="HA sentences/en directory")
    parser.add_argument("--tests", type=Path, required=True, help="HA tests/en directory")
    parser.add_argument("--repeat", type=int, default=20, help="timed matches per sentence (default 20)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N sentences (0 = all)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed first pass")
    args = parser.parse_args(argv)

    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    for label, directory in (("--sentences", args.sentences), ("--tests", args.tests)):
        if not directory.is_dir():
            parser.error(f"{label} {directory}: not a directory")
    fixtures_path = args.tests / FIXTURES_NAME
    if not fixtures_path.is_file():
        parser.error(f"{fixtures_path}: missing")

    t0 = time.perf_counter_ns()
    intents, load_parts, templates, dropped = load_intents(args.sentences)
    t1 = time.perf_counter_ns()
    global_lists = build_slot_lists(read_yaml(fixtures_path))
    t2 = time.perf_counter_ns()
    load_ms = (t2 - t0) / 1e6
    log(
        f"loaded {len(intents.intents)} intents, {templates} templates in {load_ms:.1f} ms "
        f"(yaml {load_parts['yaml_ms']:.1f} ms, build {load_parts['build_ms']:.1f} ms, "
        f"slot lists {(t2 - t1) / 1e6:.1f} ms)"
    )
    for message in dropped:
        log(f"WARNING: dropped {message}")

    cases = load_cases(args.tests, global_lists)
    if args.limit > 0:
        cases = cases[: args.limit]
    if not cases:
        log("no test sentences found")
        return 1
    log(f"{len(cases)} sentences, {args.repeat} timed runs each")

    first_pass_ms = 0.0
    if not args.no_warmup:
        # hassil builds some indexes lazily (slot list tries, regex caches):
        # one untimed pass keeps that out of the per-sentence figures.
        w0 = time.perf_counter_ns()
        for case in cases:
            try:
                recognize(case, intents)
            except hassil.errors.HassilError:
                pass  # counted in the timed pass below
        first_pass_ms = (time.perf_counter_ns() - w0) / 1e6

    medians_us: List[float] = []
    recognized = 0
    expected_intent = 0
    errors = 0
    slowest: Tuple[float, str] = (0.0, "")
    clock = time.perf_counter_ns
    for case in cases:
        samples: List[int] = []
        result = None
        failed = False
        for _ in range(args.repeat):
            start = clock()
            try:
                result = recognize(case, intents)
            except hassil.errors.HassilError as err:
                result, failed = None, True
                error_message = f"{case.source}: {case.text}: {err}"
            samples.append(clock() - start)
        if failed:
            errors += 1
            log(f"WARNING: hassil raised on {error_message}")
        elif result is not None:
            recognized += 1
            if result.intent.name == case.expected_intent:
                expected_intent += 1
        median_us = statistics.median(samples) / 1e3
        medians_us.append(median_us)
        if median_us > slowest[0]:
            slowest = (median_us, f"{case.source}: {case.text}")

    report = {
        "engine": "hassil",
        "hassil_version": metadata.version("hassil"),
        "sentences": len(cases),
        "load_ms": round(load_ms, 3),
        "median_us_per_sentence": round(statistics.median(medians_us), 3),
        "mean_us_per_sentence": round(statistics.fmean(medians_us), 3),
        "recognized": recognized,
        "expected_intent": expected_intent,
        "errors": errors,
        "dropped_blocks": dropped,
        "repeat": args.repeat,
        "intents": len(intents.intents),
        "templates": templates,
        "first_pass_ms": round(first_pass_ms, 3),
        "max_us_per_sentence": round(slowest[0], 3),
        "slowest_sentence": slowest[1],
        "python": sys.version.split()[0],
        "yaml_loader": YAML_LOADER.__name__,
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
