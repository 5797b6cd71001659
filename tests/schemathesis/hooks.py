"""Schemathesis hooks: realistic values for the formats a JSON Schema cannot spell out."""

import schemathesis
from hypothesis import strategies as st

# `format: phone` fields take any typed form of a number; a generated Japanese mobile in one of
# the common spellings lets positive tests reach past number parsing into the real rules.
schemathesis.openapi.format(
    "phone",
    st.from_regex(r"\A(0[789]0-?[1-9][0-9]{3}-?[0-9]{4}|\+81[789]0[1-9][0-9]{7})\Z"),
)
