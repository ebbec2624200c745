"""Moving a diary in and out: export to one ZIP; import ours, Day One's or the original's.

- export: the ZIP, streamed (docs/export-format.md);
- readers: each importable source read into IncomingEntry records, hostile ZIPs refused;
- importer: the records stored all or nothing, never twice.
"""

from .export import count_live_entries, export_zip
from .importer import import_entries, import_file
from .readers import ImportResult, SourceBucket

__all__ = [
    "ImportResult",
    "SourceBucket",
    "count_live_entries",
    "export_zip",
    "import_entries",
    "import_file",
]
