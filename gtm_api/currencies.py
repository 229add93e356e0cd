"""ISO 4217 currencies and their minor-unit exponents."""

import pycountry

# ISO 4217 exponents that differ from 2 (the rest use cents-like minor units).
_EXPONENTS = {
    **dict.fromkeys(
        [
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "UYI",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
    **dict.fromkeys(["CLF", "UYW"], 4),
}
# Codes that are not money one can charge: precious metals, testing, special drawing rights.
_NOT_CHARGEABLE = {
    "XAG",
    "XAU",
    "XBA",
    "XBB",
    "XBC",
    "XBD",
    "XDR",
    "XPD",
    "XPT",
    "XSU",
    "XTS",
    "XUA",
    "XXX",
}

CURRENCY_CODES = frozenset(
    c.alpha_3 for c in pycountry.currencies if c.alpha_3 not in _NOT_CHARGEABLE
)


def currency_exponent(code: str) -> int:
    return _EXPONENTS.get(code, 2)
