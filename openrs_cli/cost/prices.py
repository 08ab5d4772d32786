"""GPU rental prices: the shipped, versioned table (`data/prices-*.json`, a source and date per row), overrides,
and the mapping from NVML device names to price keys.

Precedence (later wins): shipped table < a price file (`--prices FILE` or env OPENRS_PRICES; JSON or TOML, either
`{"rows": [{"gpu", "usd_per_gpu_hour", "source", "observed"}]}` or a flat `{"A40": 0.5}`) < environment
`OPENRS_PRICE_<KEY>=USD` (e.g. OPENRS_PRICE_A100_80GB=2.1) < `--price KEY=USD`. Optional electricity price and
PUE (owned hardware): `--electricity-usd-kwh`, `--pue` or OPENRS_ELECTRICITY_USD_KWH / OPENRS_PUE.
An NVML name that maps to no key gets no dollar figure (never a guessed one).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from openrs_cli.errors import LedgerError

DATA = Path(__file__).resolve().parent / "data"
DEFAULT_TABLE = DATA / "prices-rental-2026.json"


@dataclass(frozen=True)
class PriceRow:
    gpu: str
    usd_per_gpu_hour: float
    source: str
    observed: str


@dataclass
class PriceTable:
    id: str
    version: int
    date: str
    rows: dict[str, PriceRow]
    electricity_usd_kwh: float | None = None
    pue: float = 1.0
    overrides: list[str] = field(default_factory=list)

    def price(self, key: str | None) -> float | None:
        row = self.rows.get(key) if key else None
        return row.usd_per_gpu_hour if row else None

    @property
    def label(self) -> str:
        return f"{self.id} v{self.version} ({self.date})" + (" + overrides" if self.overrides else "")

    def to_json(self) -> dict:
        return {
            "id": self.id, "version": self.version, "date": self.date, "overrides": self.overrides,
            "electricity_usd_kwh": self.electricity_usd_kwh, "pue": self.pue,
            "rows": [vars(r) for r in self.rows.values()],
        }


def normalize_key(name: str) -> str:
    """'a100_80gb' -> 'A100-80GB', 'rtx 4090' -> 'RTX-4090', 'A100-80G' -> 'A100-80GB'."""
    k = re.sub(r"[\s_]+", "-", name.strip().upper())
    return re.sub(r"(\d+)G$", r"\1GB", k)


def gpu_key(nvml_name: str | None, mem_total_mib: float | None = None) -> str | None:
    """The price key for an NVML device name, or None when it is not known. A MIG instance ("NVIDIA H100 80GB HBM3
    MIG 1g.10gb") has a key of its own ("H100-MIG-1G.10GB"), never its whole GPU's: no table prices slices, so it
    gets a dollar figure only from an override."""
    n = (nvml_name or "").upper()
    if " MIG " in n:
        gpu, _, profile = n.partition(" MIG ")
        base = gpu_key(gpu)
        return f"{base}-MIG-{profile.strip()}" if base else None
    if "H200" in n:
        return "H200"
    if "H100" in n:
        return "H100"
    if "A100" in n:
        if "80GB" in n or (mem_total_mib and mem_total_mib > 60_000):
            return "A100-80GB"
        if "40GB" in n or mem_total_mib:
            return "A100-40GB"
        return None
    if "L40S" in n:
        return "L40S"
    if re.search(r"\bA40\b", n):
        return "A40"
    if "4090" in n:
        return "RTX-4090"
    if re.search(r"\bL4\b", n):
        return "L4"
    return None


def _price_value(raw, where: str, what: str = "give USD per GPU-hour, e.g. A40=0.44") -> float:
    try:
        v = float(raw)
    except (TypeError, ValueError):
        raise LedgerError(f"{where}: '{raw}' is not a number; {what}") from None
    if not math.isfinite(v):
        raise LedgerError(f"{where}: {raw} is not a finite number; {what}")
    if v < 0:
        raise LedgerError(f"{where}: {raw} is negative; {what}")
    return v


def _read_table_file(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as e:
        raise LedgerError(f"cannot read price file {path}: {e}; check the path") from e
    try:
        if path.suffix == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                raise LedgerError(f"price file {path}: TOML needs Python 3.11+; write it as JSON") from None
            return tomllib.loads(text)
        return json.loads(text)
    except ValueError as e:
        raise LedgerError(f"price file {path} is not valid {path.suffix[1:] or 'JSON'}: {e}") from e


def _apply_file(table: PriceTable, path: Path) -> None:
    data = _read_table_file(path)
    if not isinstance(data, dict):
        raise LedgerError(f"price file {path}: expected an object ({{\"A40\": 0.5}} or {{\"rows\": [...]}}), "
                          f"got {type(data).__name__}")
    rows = data.get("rows")
    if rows is None:  # flat mapping {"A40": 0.5} (also TOML's [gpus.A40] usd_per_gpu_hour = ...)
        flat = data.get("gpus", data)
        if not isinstance(flat, dict):
            raise LedgerError(f"price file {path}: 'gpus' must map GPU names to prices")
        rows = [{"gpu": k, "usd_per_gpu_hour": v.get("usd_per_gpu_hour") if isinstance(v, dict) else v,
                 "source": (v.get("source") if isinstance(v, dict) else None) or f"price file {path}",
                 "observed": (v.get("observed") if isinstance(v, dict) else None) or ""}
                for k, v in flat.items() if k not in ("id", "version", "date", "description")]
    if not isinstance(rows, list):
        raise LedgerError(f"price file {path}: 'rows' must be a list of {{gpu, usd_per_gpu_hour}} objects")
    for r in rows:
        if not isinstance(r, dict) or "gpu" not in r:
            raise LedgerError(f"price file {path}: each row needs 'gpu' and 'usd_per_gpu_hour'")
        key = normalize_key(str(r["gpu"]))
        table.rows[key] = PriceRow(key, _price_value(r.get("usd_per_gpu_hour"), f"price file {path}"),
                                   str(r.get("source") or f"price file {path}"), str(r.get("observed") or ""))
    table.overrides.append(f"file {path}")


def load_prices(price_file: str | Path | None = None, price_overrides=(), electricity_usd_kwh: float | None = None,
                pue: float | None = None, env=None) -> PriceTable:
    """The active price table (see the module docstring for precedence)."""
    env = os.environ if env is None else env
    base = json.loads(DEFAULT_TABLE.read_text())
    table = PriceTable(base["id"], int(base["version"]), base["date"], {})
    for r in base["rows"]:
        table.rows[r["gpu"]] = PriceRow(r["gpu"], float(r["usd_per_gpu_hour"]), r["source"], r["observed"])
    file = price_file or env.get("OPENRS_PRICES")
    if file:
        _apply_file(table, Path(file))
    for var, raw in sorted(env.items()):
        if var.startswith("OPENRS_PRICE_") and var != "OPENRS_PRICES":
            key = normalize_key(var[len("OPENRS_PRICE_"):])
            table.rows[key] = PriceRow(key, _price_value(raw, var), f"environment {var}", "")
            table.overrides.append(f"{var}={raw}")
    for item in price_overrides or ():
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise LedgerError(f"--price '{item}' is not KEY=USD; e.g. --price A40=0.5")
        key = normalize_key(key)
        table.rows[key] = PriceRow(key, _price_value(raw, f"--price {item}"), "--price on the command line", "")
        table.overrides.append(f"--price {key}={raw}")
    elec = electricity_usd_kwh if electricity_usd_kwh is not None else env.get("OPENRS_ELECTRICITY_USD_KWH")
    if elec not in (None, ""):
        table.electricity_usd_kwh = _price_value(elec, "electricity price", "give USD per kWh, e.g. 0.15")
    p = pue if pue is not None else env.get("OPENRS_PUE")
    if p not in (None, ""):
        table.pue = _price_value(p, "PUE", "give a ratio >= 1, e.g. 1.2")
        if table.pue < 1:
            raise LedgerError(f"PUE {p} is below 1; a data centre's PUE is >= 1 (typical 1.1-1.6)")
    return table
