"""Reading what a polled region sends back with its next poll."""

import re

COUNTER = re.compile(r'<a class="running-counter[^>]*>')
VALUES = re.compile(r"""hx-vals='\{"v": "([0-9a-f]*)"\}'""")


def fingerprint_of(body: str) -> str:
    """The fingerprint of the page's (or fragment's) polled region, the header's aside."""
    return VALUES.search(COUNTER.sub("", body)).group(1)


def header_fingerprint(body: str) -> str:
    """The header counter's fingerprint."""
    return VALUES.search(COUNTER.search(body).group(0)).group(1)
