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

3. Constant per-request overhead. To route each request, moto lists its own package directory
   (one `stat` per service) under a lock that every request takes; the list never changes, so
   it is read once here. And every message an SQS ReceiveMessage returns recomputes all the
   queue's attributes, counting every message in the queue, to read the retention period:
   here it reads the retention period alone. Sending a message also computes all the
   attributes to read `ContentBasedDeduplication`: here that one alone. Together these made
   a fan-out's traffic quadratic. Listing a queue's visible messages (every receive) read the
   clock twice per message: here once per listing. Deleting a message searched every message
   for its receipt handle, building a list per message: here a map from receipt handle to
   message finds it. Request lines are not logged (errors still are).

Behaviour is unchanged in every case; only the locking (1) is stricter than moto's. The
patches are written against moto 5.2.5 (pinned in infra/requirements-test.txt): when moto is
upgraded, check each one against the new code (the server warns when the version differs).

Usage: python infra/moto_server.py [moto_server arguments, e.g. -H 127.0.0.1 -p 5000]
"""

import functools
import logging
import sys
import threading

import moto
import moto.backends
from moto.core.utils import unix_time, unix_time_millis
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler
from moto.server import main
from moto.sqs.models import Message, Queue, SQSBackend

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

_MOTO_MODULES = tuple(moto.backends.list_of_moto_modules())
moto.backends.list_of_moto_modules = lambda: _MOTO_MODULES


def _retained(self, queue_name, message):
    queue = self.get_queue(queue_name)
    return queue.message_retention_period + message.sent_timestamp / 1000 > unix_time()


SQSBackend.is_message_valid_based_on_retention_period = _retained

# While a message is being sent, `queue.attributes` is read only for
# `ContentBasedDeduplication` (a FIFO attribute): answer that without counting the messages.
_sending = threading.local()
_all_attributes = Queue.attributes.fget
_original_send_message = SQSBackend.send_message


def _attributes(self):
    if getattr(_sending, "active", False):
        return {"ContentBasedDeduplication": getattr(self, "content_based_deduplication", None)} if self.fifo_queue else {}
    return _all_attributes(self)


@functools.wraps(_original_send_message)
def _send_message(self, *args, **kwargs):
    _sending.active = True
    try:
        return _original_send_message(self, *args, **kwargs)
    finally:
        _sending.active = False


Queue.attributes = property(_attributes)
SQSBackend.send_message = _send_message


def _visible_messages(self):
    now = unix_time_millis()
    return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]


Queue.messages = property(_visible_messages)

# Receipt handle -> message, for every handle a message was given on receipt.
_BY_HANDLE = {}
_original_mark_received = Message.mark_received
_original_delete_message = Queue.delete_message


@functools.wraps(_original_mark_received)
def _mark_received(self, *args, **kwargs):
    _original_mark_received(self, *args, **kwargs)
    _BY_HANDLE[self.receipt_handle] = self


@functools.wraps(_original_delete_message)
def _delete_message(self, receipt_handle):
    if receipt_handle in self.deleted_messages:
        return None
    message = _BY_HANDLE.get(receipt_handle)
    try:
        index = self._messages.index(message) if message is not None else -1
    except ValueError:
        index = -1
    if index < 0:
        # Not a handle this server handed out for a message of this queue: moto decides.
        return _original_delete_message(self, receipt_handle)
    del self._messages[index]
    self.pending_messages.discard(message)
    self.deleted_messages.update(message.all_receipt_handles)
    for handle in message.all_receipt_handles:
        _BY_HANDLE.pop(handle, None)
    return None


Message.mark_received = _mark_received
Queue.delete_message = _delete_message
logging.getLogger("werkzeug").setLevel(logging.WARNING)

if moto.__version__ != "5.2.5":
    print(f"moto_server.py: written for moto 5.2.5, running {moto.__version__}: re-check its patches", file=sys.stderr)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
