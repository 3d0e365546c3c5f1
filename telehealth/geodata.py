"""Vietnam's administrative units, read from the ``vietnamadminunits`` package (MIT).

The package carries the 34 provinces of the two-level local government (from
1 July 2025) with their 3,321 communes and wards and coordinates, the 63
provinces before, and which old province merged into which new one. We read its
SQLite file and JSON mapping directly: they are the package's data, and this
keeps the load to a few milliseconds.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import vietnamadminunits


@dataclass(frozen=True)
class ProvinceRow:
    code: str
    name: str
    short_name: str
    latitude: float
    longitude: float

    @property
    def is_city(self) -> bool:
        return self.name.startswith("Thành phố")


@dataclass(frozen=True)
class LegacyProvinceRow:
    code: str
    name: str
    short_name: str
    province_code: str


@dataclass(frozen=True)
class CommuneRow:
    code: str
    name: str
    kind: str
    province_code: str
    latitude: float
    longitude: float
    area_km2: float | None


def _data_dir() -> Path:
    return Path(vietnamadminunits.__file__).parent / "data"


def _query(sql: str) -> list[sqlite3.Row]:
    with sqlite3.connect(f"file:{_data_dir() / 'dataset.db'}?mode=ro", uri=True) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql).fetchall()


def provinces() -> list[ProvinceRow]:
    rows = _query(
        "SELECT DISTINCT provinceCode, province, provinceShort, provinceLat, provinceLon "
        "FROM admin_units ORDER BY provinceCode"
    )
    return [ProvinceRow(r[0], r[1], r[2], r[3], r[4]) for r in rows]


def communes() -> list[CommuneRow]:
    rows = _query(
        "SELECT wardCode, ward, wardType, provinceCode, wardLat, wardLon, wardAreaKm2 "
        "FROM admin_units ORDER BY wardCode"
    )
    return [CommuneRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]


def legacy_provinces() -> list[LegacyProvinceRow]:
    """The 63 provinces before July 2025, each with the code of the province it is part of now."""
    new_key_to_code = {
        r[0]: r[1] for r in _query("SELECT DISTINCT provinceKey, provinceCode FROM admin_units")
    }
    mapping = json.loads((_data_dir() / "converter_2025.json").read_text())["DICT_PROVINCE"]
    old_key_to_new_code = {
        old_key: new_key_to_code[new_key]
        for new_key, old_keys in mapping.items()
        for old_key in old_keys
    }
    rows = _query(
        "SELECT DISTINCT provinceCode, province, provinceShort, provinceKey "
        "FROM admin_units_legacy ORDER BY provinceCode"
    )
    return [LegacyProvinceRow(r[0], r[1], r[2], old_key_to_new_code[r[3]]) for r in rows]
