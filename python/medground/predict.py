"""Batch inference: one process, local worker processes, or a Dask cluster.

``medground.predict(records, model, task, output)`` runs a model over test
records (Med-GRIT-270k / MeCoVQA / BiRD prediction inputs) and appends one JSON
line per record to ``output`` in the format ``medground.evaluate`` reads
(BiRD's ``id, image, question, annotation, response``; MedPLIB's
``question_id, text, gt``).

Guarantees:
  * every record id is written exactly once: the driver is the only writer and
    ignores a result for an id already written (a retried task can finish twice);
  * ``resume=True`` skips ids already present in ``output``;
  * a record that fails deterministically (unreadable image, bad box) is written
    with an ``"error"`` field and does not stop the job;
  * on Dask, a worker that dies loses only its in-flight records: the scheduler
    re-runs them elsewhere (``retries``), and the model is loaded once per worker.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import sys
import time
from typing import Any, Callable, Iterable, Iterator

TASKS = ("vg", "roc", "rc", "mia", "seg", "vqa")

_IMG_SPAN = re.compile(r"<img>.*?</img>", re.S)


@dataclasses.dataclass
class Job:
    """One record, normalised: what the model needs plus what the output keeps."""

    id: str
    image: str
    question: str
    annotation: Any
    source: dict

    def to_output(self, response: Any = None, error: str | None = None) -> dict:
        out = {
            "id": self.id,
            "image": os.path.basename(self.image),
            "question": self.question,
            "annotation": self.annotation,
            "response": response,
        }
        if "question_id" in self.source:
            out["question_id"] = self.source["question_id"]
        if error is not None:
            out["error"] = error
        return out


@dataclasses.dataclass
class PredictSummary:
    written: int
    skipped_existing: int
    failed: int
    output: str
    seconds: float

    def __str__(self) -> str:
        return (f"{self.written} predictions written to {self.output} "
                f"({self.failed} failed records, {self.skipped_existing} already present) "
                f"in {self.seconds:.1f} s")


# --------------------------------------------------------------------- records

def read_records(source: str | os.PathLike | Iterable[dict]) -> list[dict]:
    """A JSON list or JSONL file, or an iterable of dicts. Malformed JSONL lines
    raise medground.FormatError naming the line."""
    from .errors import FormatError

    if not isinstance(source, (str, os.PathLike)):
        return list(source)
    path = pathlib.Path(source)
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise FormatError(f"{path}: not valid JSON: {error}") from None
        return list(data)
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise FormatError(f"{path}:{number}: not valid JSON: {error}") from None
    return records


def normalise(record: dict, index: int, image_root: str | None) -> Job:
    """Med-GRIT (`id` + conversations as [user, assistant] pairs), LLaVA/MeCoVQA
    (`image` + conversations as {from, value}), or a flat record with
    image/question/annotation."""
    from .errors import FormatError

    if not isinstance(record, dict):
        raise FormatError(f"record {index}: expected a JSON object, got {type(record).__name__}")
    record_id = record.get("id", record.get("question_id", index))
    image = record.get("image")
    question = record.get("question", record.get("text"))
    annotation = record.get("annotation", record.get("gt", record.get("gpt4_answer")))
    conversations = record.get("conversations")
    if conversations:
        first = conversations[0]
        if isinstance(first, (list, tuple)) and len(first) == 2:  # Med-GRIT pairs
            question, annotation = first[0], first[1]
        elif isinstance(first, dict):  # LLaVA turns
            human = next((t for t in conversations if t.get("from") in ("human", "user")), None)
            gpt = next((t for t in conversations if t.get("from") in ("gpt", "assistant")), None)
            question = human.get("value") if human else None
            annotation = gpt.get("value") if gpt else None
    if image is None and "id" in record:
        image = f"{record['id']}.png"  # BiRD: image = id + ".png" under the image root
    if image is None or question is None:
        raise FormatError(f"record {record_id}: needs an image and a question "
                          "(fields id/image and conversations/question/text)")
    question = _IMG_SPAN.sub("", str(question)).replace("<image>\n", "").replace("<image>", "").strip()
    if image_root and not os.path.isabs(image):
        image = os.path.join(image_root, image)
    return Job(str(record_id), str(image), question, annotation, record)


# ----------------------------------------------------------------- model side

_WORKER_MODELS: dict[Any, Any] = {}


def _get_model(model_spec: Any, threads: int | None):
    """The model of this process, loaded once (per worker process)."""
    if isinstance(model_spec, (str, os.PathLike)):
        key = (os.fspath(model_spec), threads)
    else:
        # A factory arrives unpickled anew with every task on a worker: key it
        # by its pickled bytes so the model is still built once per process.
        import hashlib
        import pickle

        try:
            key = (hashlib.sha256(pickle.dumps(model_spec)).hexdigest(), threads)
        except Exception:  # noqa: BLE001 - not picklable: it never left this process
            key = (id(model_spec), threads)
    if key not in _WORKER_MODELS:
        if isinstance(model_spec, (str, os.PathLike)):
            from . import load

            _WORKER_MODELS[key] = load(str(model_spec), threads=threads)
        elif callable(model_spec):
            _WORKER_MODELS[key] = model_spec()
        else:
            _WORKER_MODELS[key] = model_spec
    return _WORKER_MODELS[key]


def run_one(model: Any, task: str, job: Job, generation: dict) -> Any:
    """The model's answer for one job, in the form the evaluation reads."""
    if task == "seg":
        mask = model.segment(job.image, job.question, **generation)
        return mask.to_dict() if hasattr(mask, "to_dict") else mask
    # BiRD's tasks (VG, ROC, RC, MIA) and VQA are all prompted generation; the
    # raw text is kept so the evaluation parses it exactly as the papers do.
    return model.chat(job.image, job.question, **generation)


def _run_chunk(model_spec: Any, threads: int | None, task: str, jobs: list[Job],
               generation: dict) -> list[dict]:
    model = _get_model(model_spec, threads)
    results = []
    for job in jobs:
        try:
            results.append(job.to_output(response=run_one(model, task, job, generation)))
        except Exception as error:  # noqa: BLE001 - a bad record is reported, not fatal
            results.append(job.to_output(error=f"{type(error).__name__}: {error}"))
    return results


# ---------------------------------------------------------------------- driver

def _existing_ids(output: pathlib.Path) -> set[str]:
    done: set[str] = set()
    if not output.exists():
        return done
    with output.open(encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                done.add(str(json.loads(line)["id"]))
            except (json.JSONDecodeError, KeyError):
                continue  # a line cut by an interrupted run: its record is redone
    return done


def _drop_partial_last_line(output: pathlib.Path) -> None:
    """An interrupted run can leave half a line at the end; its record is redone,
    and appending after it would glue the next record onto it. Cut it off."""
    with output.open("rb+") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        if size == 0:
            return
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        position = size
        while position > 0:  # back to the last newline, in 64 KiB steps
            step = min(65536, position)
            handle.seek(position - step)
            block = handle.read(step)
            cut = block.rfind(b"\n")
            if cut >= 0:
                handle.truncate(position - step + cut + 1)
                return
            position -= step
        handle.truncate(0)


def _chunks(jobs: list[Job], size: int) -> Iterator[list[Job]]:
    for start in range(0, len(jobs), size):
        yield jobs[start:start + size]


def predict(
    records: str | os.PathLike | Iterable[dict],
    model: Any,
    task: str,
    output: str | os.PathLike,
    *,
    image_root: str | None = None,
    workers: int = 1,
    dask: Any = None,
    resume: bool = False,
    chunk_size: int = 4,
    threads_per_worker: int | None = None,
    retries: int = 3,
    progress: bool = True,
    **generation: Any,
) -> PredictSummary:
    """Run ``model`` (a checkpoint path, a loaded model, or a zero-argument
    factory) over ``records`` for ``task`` and append predictions to ``output``.

    workers: local worker processes (each loads the model once; weights are
    mmap'd so they are shared between processes). dask: a scheduler address
    ("tcp://host:8786") or a ``distributed.Client``. Extra keyword arguments
    (e.g. ``max_new_tokens``) go to the model's method.
    """
    from .errors import InvalidArgumentError

    if task not in TASKS:
        raise InvalidArgumentError(f"task '{task}': expected one of {', '.join(TASKS)}")
    started = time.perf_counter()
    output = pathlib.Path(output)
    done = _existing_ids(output) if resume else set()
    if not resume and output.exists():
        output.unlink()
    if resume and output.exists():
        _drop_partial_last_line(output)
    raw = read_records(records)
    jobs: list[Job] = []
    bad: list[dict] = []
    for index, record in enumerate(raw):
        try:
            job = normalise(record, index, image_root)
        except Exception as error:  # noqa: BLE001 - reported in the output
            rid = str(record.get("id", index)) if isinstance(record, dict) else str(index)
            bad.append({"id": rid, "error": f"{type(error).__name__}: {error}", "response": None})
            continue
        if job.id not in done:
            jobs.append(job)
    skipped = len(raw) - len(jobs) - len(bad)
    written: set[str] = set(done)
    failed = 0

    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs) + len(bad), desc=f"predict {task}", unit="rec", disable=not progress,
               file=sys.stderr)
    with output.open("a", encoding="utf-8") as sink:

        def emit(result: dict) -> None:
            nonlocal failed
            if result["id"] in written:
                return  # a retried chunk finished twice: keep the first
            written.add(result["id"])
            failed += "error" in result
            sink.write(json.dumps(result, ensure_ascii=False) + "\n")
            sink.flush()
            bar.update(1)

        for result in bad:
            emit(result)
        chunks = list(_chunks(jobs, max(1, chunk_size)))
        if dask is not None:
            _run_dask(dask, model, threads_per_worker, task, chunks, generation, retries, emit)
        elif workers > 1:
            _run_local(workers, model, threads_per_worker, task, chunks, generation, emit, retries)
        else:
            for chunk in chunks:
                for result in _run_chunk(model, threads_per_worker, task, chunk, generation):
                    emit(result)
        os.fsync(sink.fileno())
    bar.close()
    return PredictSummary(len(written) - len(done), skipped, failed, str(output),
                          time.perf_counter() - started)


def _run_local(workers: int, model: Any, threads: int | None, task: str, chunks: list[list[Job]],
               generation: dict, emit: Callable[[dict], None], retries: int = 3) -> None:
    """Chunks over a pool of spawned processes. A process that dies (killed,
    out of memory) breaks the pool: its unfinished chunks are re-run in a new
    pool, up to ``retries`` times, so only in-flight records are redone."""
    import concurrent.futures
    import multiprocessing
    from concurrent.futures.process import BrokenProcessPool

    from .errors import InternalError

    if threads is None:
        threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")  # no forked BLAS/thread-pool state
    pending = dict(enumerate(chunks))
    for attempt in range(retries + 1):
        broken = False
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = {pool.submit(_run_chunk, model, threads, task, chunk, generation): index
                       for index, chunk in pending.items()}
            for future in concurrent.futures.as_completed(futures):
                try:
                    results = future.result()
                except BrokenProcessPool:
                    broken = True
                    continue
                for result in results:
                    emit(result)
                del pending[futures[future]]
        if not broken or not pending:
            return
    raise InternalError(f"predict: worker processes kept dying; {sum(len(c) for c in pending.values())} "
                        f"records were not run after {retries} retries")


def _run_dask(dask: Any, model: Any, threads: int | None, task: str, chunks: list[list[Job]],
              generation: dict, retries: int, emit: Callable[[dict], None]) -> None:
    from distributed import Client, as_completed

    client = dask if isinstance(dask, Client) else Client(dask)
    try:
        futures = [
            client.submit(_run_chunk, model, threads, task, chunk, generation, retries=retries, pure=False)
            for chunk in chunks
        ]
        for future in as_completed(futures):
            for result in future.result():
                emit(result)
    finally:
        if client is not dask:
            client.close()


# ------------------------------------------------------------------------- CLI

def add_arguments(parser) -> None:
    parser.add_argument("records", help="test records (JSON list or JSONL)")
    parser.add_argument("--model", required=True, help="checkpoint folder or GGUF file")
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument("-o", "--output", required=True, help="prediction JSONL (appended)")
    parser.add_argument("--images", dest="image_root", help="folder the records' images are relative to")
    parser.add_argument("--workers", type=int, default=1, help="local worker processes")
    parser.add_argument("--dask", help="Dask scheduler address, e.g. tcp://scheduler:8786")
    parser.add_argument("--resume", action="store_true", help="skip ids already in the output")
    parser.add_argument("--threads", type=int, help="threads per worker")
    parser.add_argument("--max-new-tokens", type=int, help="generation length limit")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args) -> int:
    generation = {}
    if args.max_new_tokens:
        generation["max_new_tokens"] = args.max_new_tokens
    summary = predict(args.records, args.model, args.task, args.output, image_root=args.image_root,
                      workers=args.workers, dask=args.dask, resume=args.resume,
                      threads_per_worker=args.threads, **generation)
    if args.json:
        print(json.dumps(dataclasses.asdict(summary)))
    else:
        print(summary)
    return 0
