"""moto's server, as `moto_server` starts it, with two fixes to its DynamoDB for our tests.

1. Atomic requests. Real DynamoDB applies each request to an item atomically: a conditional
   put checks and writes as one, an `ADD` to a set never loses a concurrent one. moto's
   threaded server runs requests side by side without a lock, so two concurrent conditional
   puts can both pass, and a request that iterates a table while another writes fails with
   "dictionary changed size during iteration". Here every DynamoDB request holds one lock.
   SQS and the other services are untouched (an SQS long poll must not block DynamoDB).

2. Queries read their partition. moto's `Table.query` sorts every item of the whole table on
   each call to find those of one partition key, and compares keys with Python objects, so a
   query costs time in proportion to the table: a 10,000-branch fan-out made the suite
   quadratic. Here a query without an index starts from its partition's items only, in sort
   key order; moto's own code still applies the key condition, filters, limits and paging.

Usage: python infra/moto_server.py [moto_server arguments, e.g. -H 127.0.0.1 -p 5000]
"""

import functools
import sys
import threading

from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler
from moto.server import main

_DYNAMODB_LOCK = threading.RLock()
_original_call_action = DynamoHandler.call_action


@functools.wraps(_original_call_action)
def _locked_call_action(self, *args, **kwargs):
    with _DYNAMODB_LOCK:
        return _original_call_action(self, *args, **kwargs)


DynamoHandler.call_action = _locked_call_action

_original_query = Table.query


def _sort_value(item):
    key = item.range_key
    value = key.value if key is not None else None
    # Numbers sort as numbers; strings and binaries by their text, as DynamoDB does (UTF-8
    # byte order equals code point order).
    if key is not None and key.type == "N":
        return (0, float(value), "")
    return (1, 0.0, value if isinstance(value, str) else str(value))


@functools.wraps(_original_query)
def _partition_query(self, hash_key, *args, **kwargs):
    # `index_name` is the 8th parameter (moto's backend passes it by position).
    index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
    if index_name is not None or hash_key is None or not self.range_key_attr:
        return _original_query(self, hash_key, *args, **kwargs)
    partition = self.items.get(hash_key, {})
    items = sorted(partition.values(), key=_sort_value)
    # moto's query calls `self.all_items()` and keeps the items of `hash_key`: give it just
    # those, already in order (its own sort then runs over sorted input).
    self.all_items = lambda: items
    try:
        return _original_query(self, hash_key, *args, **kwargs)
    finally:
        del self.all_items


Table.query = _partition_query

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
