"""Intake: from an uploaded JSONL or CSV file to requests the API will take, with every problem
the API would only report a day later found first.

- `reading`: the upload's bytes from storage, decompressed, as numbered lines within the caps
  (bytes, lines, time), and the one CSV reader that intake, submission and downloads all use.
- `rules`: what makes a request valid: the published schema, `custom_id`, what batches refuse, the
  workspace's models; and the wording of every problem.
- `bounds`: the bounds a line must keep (depth, numbers) before anything walks it.
- `problems`: a problem found in an upload, and the report that collects them.
- `templating`: a CSV row and a prompt template into a request.
- `splitting`: placing requests into batches within the API's limits.
- `estimating`: the input tokens and price of a file before it is sent.
- `checking`: the check of a whole file, which applies the rules and writes what Submit sends,
  built from `line_checking` (one pass over a segment's lines), `accepted` (what a pass keeps),
  `segments` (a large file checked by several processes at once), `merging` (their findings as
  one report) and `bodies` (the batches' create bodies).
- `job`: that check as a background job for a stored submission, with progress and a stop
  button.
- `command_line`: `validatebatch`, the check from the shell without Django's start-up.
"""
