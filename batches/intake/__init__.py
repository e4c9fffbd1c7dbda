"""Intake: from an uploaded JSONL or CSV file to requests the API will take, with every problem
the API would only report a day later found first.

- `reading`: the upload's bytes from storage, decompressed, as numbered lines within the caps
  (bytes, lines, time), and the one CSV reader that intake, submission and downloads all use.
- `rules`: what makes a request valid: the published schema, `custom_id`, what batches refuse, the
  workspace's models; and the wording of every problem.
- `templating`: a CSV row and a prompt template into a request.
- `splitting`: placing requests into batches within the API's limits.
- `estimating`: the input tokens and price of a file before it is sent.
- `checking`: one pass over the file that applies the rules and writes what Submit sends.
- `job`: that pass as a background job for a stored submission, with progress and a stop button.
"""
