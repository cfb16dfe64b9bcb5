"""The alert-triage demo: synthetic security alerts, a MiniLM classifier, explanations per field.

The generator writes realistic-looking alerts (JSON records) with eight fields. The label
follows one documented rule over **two deciding fields**, ``user`` and ``process``: a
separation-of-duties policy in the style of SOC detections for "unusual process for this
account". Every account belongs to one of three classes, and each class has its own
class of programs (:data:`ACCOUNTS`, :data:`PROGRAMS`):

* IT administrators (``it_admin``, ``adm_jdoe``...) run admin tools (``psexec.exe``,
  ``procdump.exe``...);
* service accounts (``svc_backup``...) run maintenance binaries (``backup.exe``,
  ``vssadmin.exe``...);
* people (``j.doe``...) run interactive programs (``chrome.exe``, ``outlook.exe``...).

An alert is ``true_threat`` iff its process is **not** of its account's class (a person
running ``procdump.exe``, a service account opening ``chrome.exe``, an administrator
account browsing the web), ``false_positive`` otherwise. Threats are drawn evenly from
the six mismatched (account class, program class) cells and false positives from the
three matched ones, so each deciding field *alone* says nothing about the label (every
account and every program is a threat in half of the alerts): a model that is right
must read both, in every alert.

The other six fields are **distractors**: drawn independently of the label, many of
their values look alarming (rule ``Credential Dumping Detected``, severity ``critical``,
destination ``203.0.113.7`` port ``4444``, parent ``powershell.exe``) yet never decide.
A faithful explanation therefore puts ``process`` and ``user`` first.

(``generate_alerts(drop_distractors=p)`` also makes alerts that lack some distractor
fields, as alerts from different sensors do; the demo model is trained on complete
alerts.)

:func:`build_alerts_model` fine-tunes the shipped all-MiniLM-L6-v2 weights on 2,400
rendered alerts with the sentiment demo's machinery (:mod:`textlens.demo.build`),
saves the record template with the model (``textlens.json``) and caches the result.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TextIO

import torch

from ..records import RecordTemplate, read_template, save_template
from . import build as _build

__all__ = [
    "ACCOUNTS",
    "ALERT_FIELDS",
    "ALERT_LABELS",
    "ALERT_TEMPLATE",
    "DECIDING_FIELDS",
    "PROGRAMS",
    "Alert",
    "AlertsModelInfo",
    "alert_label",
    "build_alerts_model",
    "deciding_fields_agreement",
    "default_alerts_cache_dir",
    "generate_alerts",
    "read_cached_alerts_model",
    "run_alerts_demo",
]

#: Class names in class-id order.
ALERT_LABELS: tuple[str, str] = ("false_positive", "true_threat")
#: The fields of an alert, in the order the model reads them.
ALERT_FIELDS: tuple[str, ...] = (
    "rule",
    "severity",
    "host",
    "user",
    "process",
    "parent_process",
    "dst_ip",
    "dst_port",
)
#: The fields the label depends on.
DECIDING_FIELDS: tuple[str, str] = ("process", "user")
#: How an alert is rendered for the model (stored with the model as ``textlens.json``).
ALERT_TEMPLATE = RecordTemplate(fields=ALERT_FIELDS, missing="skip", unknown="error")

#: The accounts of each account class.
ACCOUNTS: dict[str, tuple[str, ...]] = {
    "admin": ("adm_jdoe", "it_admin", "secops_admin", "helpdesk_lead"),
    "service": ("svc_backup", "svc_patch", "svc_scanner", "svc_sql"),
    "person": ("j.doe", "a.martin", "k.singh", "m.garcia", "l.chen", "r.okafor"),
}
#: The programs each account class may run (same keys as :data:`ACCOUNTS`).
PROGRAMS: dict[str, tuple[str, ...]] = {
    "admin": ("psexec.exe", "procdump.exe", "wmic.exe", "ntdsutil.exe"),
    "service": ("backup.exe", "vssadmin.exe", "defrag.exe", "sqlservr.exe"),
    "person": ("chrome.exe", "outlook.exe", "teams.exe", "winword.exe"),
}
_MATCHED = [(k, k) for k in ACCOUNTS]
_MISMATCHED = [(a, p) for a in ACCOUNTS for p in PROGRAMS if a != p]
# Distractors: independent of the label.
RULES = (
    "Credential Dumping Detected", "Suspicious PowerShell Execution", "Lateral Movement via SMB",
    "Outbound C2 Beacon", "Scheduled Scan Finding", "Policy Violation", "Unusual Login Time",
    "Ransomware Behaviour",
)  # fmt: skip
SEVERITIES = ("low", "medium", "high", "critical")
HOST_PREFIXES = ("fin-ws", "hr-ws", "dev-lt", "srv-db", "srv-file", "dc")
PARENTS = (
    "cmd.exe",
    "powershell.exe",
    "explorer.exe",
    "services.exe",
    "wscript.exe",
    "taskeng.exe",
)
EXTERNAL_NETS = ("203.0.113", "198.51.100", "192.0.2")  # documentation ranges (RFC 5737)
PORTS = (4444, 3389, 445, 443, 8080, 53, 22, 135)

#: The rule in the model's metadata; a cached model trained on another rule is rebuilt.
RULE = "true_threat iff program_class(process) != account_class(user)"
#: Training set and passes: the rule is an interaction (neither field alone predicts the
#: label), which 600 alerts x 4 epochs and 2,400 x 4 did not learn (held-out accuracy
#: 0.57, 0.52); 1,200 x 8 and 2,400 x 8 reach 1.0. With 2,400 the explanations are more
#: faithful: on 100 held-out alerts the top-2 fields are the deciding ones for 93%
#: (integrated gradients) and 65% (grad_x_input), against 86% and 52% with 1,200; with
#: training seed 1 (same data) 65% and 75%: the shares vary from run to run, and even
#: the seed-0 run differs between machines (a fresh build on 2026-11-22: 68% and 57%).
DEFAULT_N_TRAIN = 2400
#: A fine-tuning run whose held-out accuracy stays below this did not learn the rule:
#: the interaction sits on a plateau that not every run leaves (4,800 x 8 stayed at 0.52
#: with training seed 0). Such a run is repeated with the next training seed, at most
#: ``MAX_ATTEMPTS`` runs in all; the data stay the same.
MIN_ACCURACY = 0.9
MAX_ATTEMPTS = 3
DEFAULT_EPOCHS = 8
DEFAULT_N_HELDOUT = 200
_CACHE_SUBDIR = "demo-alerts-minilm"
_KIND = "alerts"


@dataclass(frozen=True)
class Alert:
    """A synthetic alert and its label (from :func:`alert_label`)."""

    record: dict[str, Any]
    label: str

    @property
    def text(self) -> str:
        """The alert as the model reads it."""
        return ALERT_TEMPLATE.render(self.record).text


def account_class(user: str) -> str:
    """The class of an account (a key of :data:`ACCOUNTS`)."""
    return _class_of(ACCOUNTS, user, "user")


def program_class(process: str) -> str:
    """The account class a program belongs to (a key of :data:`PROGRAMS`)."""
    return _class_of(PROGRAMS, process, "process")


def _class_of(table: dict[str, tuple[str, ...]], value: str, field: str) -> str:
    for kind, names in table.items():
        if value in names:
            return kind
    known = sorted(name for names in table.values() for name in names)
    raise ValueError(f"unknown {field} {value!r}: the demo rule knows {known}")


def alert_label(record: dict[str, Any]) -> str:
    """The documented rule: ``true_threat`` iff the process is not of the user's class."""
    mismatch = account_class(record["user"]) != program_class(record["process"])
    return ALERT_LABELS[int(mismatch)]


def generate_alerts(n: int, *, seed: int = 0, drop_distractors: float = 0.0) -> list[Alert]:
    """``n`` alerts, half of them threats; reproducible from ``seed``.

    With ``drop_distractors`` > 0, each distractor field is left out of an alert with
    that probability (alerts from different sensors carry different fields); the
    deciding fields are always present.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0.0 <= drop_distractors < 1.0:
        raise ValueError(f"drop_distractors must be in [0, 1), got {drop_distractors}")
    rng = random.Random(seed)
    alerts = []
    for i in range(n):
        account, program = rng.choice(_MISMATCHED if i % 2 == 0 else _MATCHED)
        record = {
            "rule": rng.choice(RULES),
            "severity": rng.choice(SEVERITIES),
            "host": f"{rng.choice(HOST_PREFIXES)}-{rng.randint(1, 120):03d}",
            "user": rng.choice(ACCOUNTS[account]),
            "process": rng.choice(PROGRAMS[program]),
            "parent_process": rng.choice(PARENTS),
            "dst_ip": _destination(rng),
            "dst_port": rng.choice(PORTS),
        }
        if drop_distractors > 0:
            record = {
                k: v
                for k, v in record.items()
                if k in DECIDING_FIELDS or rng.random() >= drop_distractors
            }
        alerts.append(Alert(record, alert_label(record)))
    rng.shuffle(alerts)
    return alerts


def _destination(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return f"{rng.choice(EXTERNAL_NETS)}.{rng.randint(1, 254)}"
    return f"10.{rng.randint(0, 40)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


# ---------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class AlertsModelInfo:
    """A built (or cached) alert-triage model.

    Attributes
    ----------
    path : Path
        Model folder (with ``textlens.json`` holding the record template).
    accuracy : float
        Accuracy on the held-out alerts.
    heldout : list of Alert
        Alerts never seen in training.
    n_train, epochs : int
    train_seconds : float
    from_cache : bool
    """

    path: Path
    accuracy: float
    heldout: list[Alert]
    n_train: int
    epochs: int
    train_seconds: float
    from_cache: bool


def default_alerts_cache_dir() -> Path:
    """``<textlens cache>/demo-alerts-minilm`` (next to the sentiment demo model)."""
    return _build.default_cache_dir().parent / _CACHE_SUBDIR


def read_cached_alerts_model(path: Path) -> AlertsModelInfo | None:
    """The cached model in ``path`` if complete, else None (reads only metadata)."""
    base = _build.read_cached_model(path)
    if base is None or read_template(path) is None:
        return None
    try:
        meta = json.loads((path / _build.METADATA_FILENAME).read_text(encoding="utf-8"))
        if meta.get("kind") != _KIND or meta.get("rule") != RULE:
            return None  # another kind of model, or one trained on an older rule
        heldout = [
            Alert(dict(item["record"]), str(item["label"])) for item in meta["heldout_records"]
        ]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return AlertsModelInfo(
        path=path,
        accuracy=base.accuracy,
        heldout=heldout,
        n_train=base.n_train,
        epochs=base.epochs,
        train_seconds=base.train_seconds,
        from_cache=True,
    )


def build_alerts_model(
    *,
    cache_dir: Path | None = None,
    rebuild: bool = False,
    n_train: int = DEFAULT_N_TRAIN,
    epochs: int = DEFAULT_EPOCHS,
    n_heldout: int = DEFAULT_N_HELDOUT,
    seed: int = 0,
    progress: bool = True,
    num_threads: int | None = None,
) -> AlertsModelInfo:
    """Return the alert-triage model, fine-tuning and caching it on first use.

    Fine-tunes all-MiniLM-L6-v2 (shipped weights, offline) on ``n_train`` rendered
    alerts for ``epochs`` passes, with the sentiment demo's optimiser, schedule and
    batching; about 23 minutes on one shared CPU core (2,400 alerts x 8 epochs). A
    complete cached model trained on the same rule with the same ``n_train``,
    ``epochs`` and fine-tuning settings is returned at once unless ``rebuild``.

    Parameters
    ----------
    cache_dir : Path, optional
        Defaults to :func:`default_alerts_cache_dir`.
    rebuild : bool
        Build even if a cached model exists.
    n_train, epochs, n_heldout : int
        Training alerts, passes, held-out alerts.
    seed : int
        Seed of the data and the training (the caller's RNG state is kept).
    progress : bool
        Show progress bars on stderr.
    num_threads : int, optional
        Torch CPU threads while building.

    Returns
    -------
    AlertsModelInfo

    Raises
    ------
    DemoDataError
        If no run learns the rule. A run whose held-out accuracy stays below
        :data:`MIN_ACCURACY` is repeated (with a ``RuntimeWarning``) with the next training
        seed, at most :data:`MAX_ATTEMPTS` runs in all; nothing is cached from a failed run.
    """
    target = Path(cache_dir) if cache_dir is not None else default_alerts_cache_dir()
    if not rebuild:
        cached = read_cached_alerts_model(target)
        if (
            cached is not None
            and (cached.n_train, cached.epochs) == (n_train, epochs)
            and _build._is_current(target, _hyperparameters(), "alert model")
        ):
            return cached
    if epochs < 1 or n_train < 2 or n_heldout < 1:
        raise ValueError(
            f"need epochs >= 1, n_train >= 2, n_heldout >= 1; got {epochs}, {n_train}, {n_heldout}"
        )
    train = generate_alerts(n_train, seed=seed)
    seen = {a.text for a in train}
    heldout = [
        a
        for a in generate_alerts(n_heldout + n_heldout // 4, seed=seed + 10_007)
        if a.text not in seen
    ][:n_heldout]
    _build._remove_stale_tmp_dirs(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{_build._TMP_MARKER}", dir=target.parent))
    try:
        with _build._torch_threads(num_threads), torch.random.fork_rng(devices=[]):
            for attempt in range(MAX_ATTEMPTS):
                meta = _train_into(
                    tmp, train, heldout, epochs=epochs, seed=seed + attempt, progress=progress
                )
                if meta["accuracy"] >= MIN_ACCURACY:
                    break
                if attempt + 1 < MAX_ATTEMPTS:
                    warnings.warn(
                        f"The alert model did not learn the rule (held-out accuracy "
                        f"{meta['accuracy']:.2f} < {MIN_ACCURACY}); fine-tuning again with "
                        f"training seed {seed + attempt + 1}.",
                        RuntimeWarning,
                        stacklevel=2,
                    )
            else:
                raise _build.DemoDataError(
                    f"The alert model did not learn the rule in {MAX_ATTEMPTS} fine-tuning runs "
                    f"(held-out accuracy {meta['accuracy']:.2f} < {MIN_ACCURACY}); nothing was "
                    f"cached. Use the defaults (n_train={DEFAULT_N_TRAIN}, "
                    f"epochs={DEFAULT_EPOCHS}) or more epochs."
                )
        save_template(tmp, ALERT_TEMPLATE)
        _build._write_metadata(tmp, meta)
        _build._publish(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    info = read_cached_alerts_model(target)
    if info is None:
        raise _build.DemoDataError(f"The alerts model written to {target} cannot be read back")
    return replace(info, from_cache=False)


def _hyperparameters() -> Any:
    """The sentiment demo's fine-tuning settings, with room for the longer alert texts."""
    return replace(_build._Hyperparameters(), batch_size=16, max_length=128)


def _train_into(
    folder: Path,
    train: Sequence[Alert],
    heldout: Sequence[Alert],
    *,
    epochs: int,
    seed: int,
    progress: bool,
) -> dict[str, Any]:
    started = time.perf_counter()
    hyper = _hyperparameters()
    torch.manual_seed(seed)
    model, tokenizer = _build._load_base()  # MiniLM with a fresh 2-class head
    model.config.id2label = dict(enumerate(ALERT_LABELS))
    model.config.label2id = {label: i for i, label in enumerate(ALERT_LABELS)}
    ids = _build._encode(tokenizer, [a.text for a in train], hyper.max_length)
    labels = [ALERT_LABELS.index(a.label) for a in train]
    train_seconds = _build._fine_tune(
        model, ids, labels, epochs=epochs, seed=seed, hyper=hyper, progress=progress
    )
    heldout_ids = _build._encode(tokenizer, [a.text for a in heldout], hyper.max_length)
    accuracy = _build._evaluate(
        model,
        heldout_ids,
        [ALERT_LABELS.index(a.label) for a in heldout],
        hyper=hyper,
        progress=progress,
    )
    with _build._quiet_transformers():
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return {
        "format_version": _build._FORMAT_VERSION,
        "kind": _KIND,
        "base_model": _build.BASE_MODEL_NAME,
        "labels": list(ALERT_LABELS),
        "rule": RULE,
        "deciding_fields": list(DECIDING_FIELDS),
        "accuracy": accuracy,
        "n_train": len(train),
        "n_heldout": len(heldout),
        "epochs": epochs,
        "seed": seed,
        "train_seconds": train_seconds,
        "total_seconds": time.perf_counter() - started,
        "num_threads": torch.get_num_threads(),
        "hyperparameters": asdict(hyper),
        "versions": {"torch": torch.__version__, "transformers": _build._transformers_version()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "heldout": [{"text": a.text, "label": a.label} for a in heldout],
        "heldout_records": [{"record": a.record, "label": a.label} for a in heldout],
    }


def deciding_fields_agreement(
    model: Any, alerts: Sequence[Alert], method: str, *, k: int = 2, **params: Any
) -> float:
    """Share of ``alerts`` whose ``k`` fields of largest ``|score|`` are the deciding fields.

    The check of the demo: with ``k=2``, a faithful method names ``process`` and ``user``.
    """
    from ..records import explain_records

    explanations = explain_records(
        model, [a.record for a in alerts], method, template=ALERT_TEMPLATE, **params
    )
    hits = sum(
        {name for name, _ in e.top(k, "field")} == set(DECIDING_FIELDS[:k]) for e in explanations
    )
    return hits / len(explanations)


# ---------------------------------------------------------------------- `textlens demo alerts`
def run_alerts_demo(
    *,
    rebuild: bool = False,
    cache_dir: Path | None = None,
    n_alerts: int = 6,
    methods: Sequence[str] = ("grad_x_input", "integrated_gradients"),
    serve: bool = False,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    out: TextIO,
    progress: bool = True,
) -> int:
    """Build (first run) the alerts model, explain a few held-out alerts, optionally serve it.

    Prints, per alert, the verdict with its key reasons per method, then (``serve``)
    starts the HTTP server and web page with this model until interrupted (see
    :func:`textlens.server.serve` for ``host``, ``port`` and ``api_key``). Returns the
    exit code: 0, or 1 if held-out accuracy is under 0.9.
    """
    from ..api import load
    from ..reasons import key_reasons
    from ..records import explain_records

    if n_alerts < 1:
        raise ValueError(f"n_alerts must be >= 1, got {n_alerts}")
    info = build_alerts_model(cache_dir=cache_dir, rebuild=rebuild, progress=progress)
    source = "cached" if info.from_cache else f"fine-tuned in {info.train_seconds:.0f} s"
    out.write(
        f"Alert-triage model: MiniLM-L6 ({source}) at {info.path}\n"
        f"Held-out accuracy: {info.accuracy:.3f} on {len(info.heldout)} alerts "
        f"({info.n_train} training alerts, {info.epochs} epoch{'' if info.epochs == 1 else 's'})\n"
        f"Rule: true_threat iff the process is not of the user's account class; "
        f"deciding fields: {', '.join(DECIDING_FIELDS)}\n\n"
    )
    model = load(info.path)
    alerts = info.heldout[:n_alerts]
    per_method = {m: explain_records(model, [a.record for a in alerts], m) for m in methods}
    for i, alert in enumerate(alerts):
        out.write(json.dumps(alert.record) + f"\n  truth: {alert.label}\n")
        for method in methods:
            out.write(f"  {method}: {key_reasons(per_method[method][i], k=3).summary}\n")
        out.write("\n")
    if serve:
        from ..server import serve as serve_model

        out.write(f"Serving on http://{host}:{port}/ (Ctrl+C to stop)\n")
        out.flush()
        serve_model(model, host=host, port=port, api_key=api_key)
    return 0 if info.accuracy >= 0.9 else 1
