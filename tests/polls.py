"""Reading what a polled region sends back with its next poll."""

import re

COUNTER = re.compile(r'<a class="running-counter[^>]*>')
VALUES = re.compile(r"""hx-vals='\{"v": "([0-9a-f]*)"\}'""")


def fingerprint_of(body: str) -> str:
    """The fingerprint of the page's (or fragment's) polled region, the header's aside."""
    found = VALUES.search(COUNTER.sub("", body))
    assert found is not None, "no polled region in the page"
    return found.group(1)


def header_fingerprint(body: str) -> str:
    """The header counter's fingerprint."""
    counter = COUNTER.search(body)
    assert counter is not None, "no running counter in the header"
    found = VALUES.search(counter.group(0))
    assert found is not None, "the header's running counter is not polled"
    return found.group(1)
