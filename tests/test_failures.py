"""The launcher's reading of torchrun's failure summary and its stderr relay (no processes)."""

from __future__ import annotations

import io
import os

from orpo_dist.launcher.failures import StderrRelay, failure_message, parse_failures

SUMMARY = """Traceback (most recent call last):
  File "/venv/bin/accelerate", line 8, in <module>
    sys.exit(main())
torch.distributed.elastic.multiprocessing.errors.ChildFailedError: 
============================================================
orpo_dist.train FAILED
------------------------------------------------------------
Failures:
[1]:
  time      : 2026-12-02_17:42:34
  host      : gpu-node-7
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 16316)
  error_file: <N/A>
  traceback : Signal 15 (SIGTERM) received by PID 16316
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-02_17:42:34
  host      : gpu-node-7
  rank      : 9 (local_rank: 1)
  exitcode  : -9 (pid: 16317)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 16317
============================================================
"""


def test_the_root_cause_comes_first_with_its_signal_and_a_hint():
    failures = parse_failures(SUMMARY)
    assert [(f.rank, f.local_rank, f.host, f.exitcode) for f in failures] == [
        ("9", "1", "gpu-node-7", -9), ("0", "0", "gpu-node-7", -15)]
    message = failure_message(1, SUMMARY)
    assert message.startswith("rank 9 (local rank 1 on gpu-node-7, pid 16317) was killed by SIGKILL")
    assert "out-of-memory killer" in message and "also rank 0" in message


def test_no_summary_falls_back_to_the_exit_status():
    assert failure_message(3, "") == "training exited with status 3 (its own error is printed above)"
    assert "the launcher was killed by SIGKILL" in failure_message(-9, "")


def relay(text: str):
    read, write = os.pipe()
    os.write(write, text.encode())
    os.close(write)
    out = io.StringIO()
    r = StderrRelay(os.fdopen(read), out)
    r.wait()
    return out.getvalue(), r.failure_summary


def test_the_relay_holds_back_only_torchruns_traceback():
    rank_error = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: a real error\n'
    shown, summary = relay("step 1\n" + rank_error + "progress 50%\r" + SUMMARY)
    assert shown == "step 1\n" + rank_error + "progress 50%\r"
    assert "ChildFailedError" in summary and "Root Cause" in summary


def test_a_rank_that_lost_its_peers_is_named_as_such():
    """A link cut between machines: this machine's rank times out and says so itself (train.py);
    the launcher's line carries that reason and says nobody here died, instead of "exited with
    status 1 (its own error is printed above)"."""
    lost = ("  0%|          | 7/100000 [00:06<22:03:04,  1.26it/s]orpo-dist: rank 0 lost contact with the other "
            "training processes ([gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 10000ms for recv "
            "operation to complete); stopping\n")
    summary = ("Traceback (most recent call last):\n  File \"/venv/bin/accelerate\", line 8, in <module>\n"
               "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \nRoot Cause (first observed "
               "failure):\n[0]:\n  host      : gpu-node-7\n  rank      : 0 (local_rank: 0)\n"
               "  exitcode  : 1 (pid: 16317)\n")
    read, write = os.pipe()
    os.write(write, (lost + summary).encode())
    os.close(write)
    out = io.StringIO()
    r = StderrRelay(os.fdopen(read), out)
    r.wait()
    assert "ChildFailedError" not in out.getvalue()
    assert "lost contact" in out.getvalue()  # the rank's line is still shown
    assert r.lost_contact == {"0": "[gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 10000ms for "
                                    "recv operation to complete"}
    message = failure_message(1, r.failure_summary, r.lost_contact)
    assert message.startswith("rank 0 (local rank 0 on gpu-node-7, pid 16317) lost contact with the other "
                              "training processes ([gloo")
    assert "No process on this machine died" in message and "ddp_timeout" in message
    # A rank that died of its own error is still reported as before, lost contact or not elsewhere.
    assert "killed by SIGKILL" in failure_message(1, SUMMARY, r.lost_contact)


def test_a_lost_contact_line_split_across_reads_is_still_recognised():
    """A pipe read can end inside the rank's line; its first part is passed on at once (it could be
    a progress bar), and the line must still be recognised when the rest arrives (seen in the
    real-cluster link-cut test: the launcher then said "exited with status 1")."""
    import time

    line = ("orpo-dist: rank 0 lost contact with the other training processes ([gloo] Timed out waiting "
            "10000ms for recv operation to complete); stopping\n")
    read, write = os.pipe()
    out = io.StringIO()
    r = StderrRelay(os.fdopen(read), out)
    first = "\r  0%|  | 4/100000\r  0%|  | 5/100000 [00:14<80:43:32]" + line[:30]
    os.write(write, first.encode())
    deadline = time.time() + 10
    while out.getvalue() != first and time.time() < deadline:  # passed on alone, before the rest exists
        time.sleep(0.01)
    assert out.getvalue() == first
    os.write(write, line[30:].encode())
    os.close(write)
    r.wait()
    assert out.getvalue().endswith(line)  # shown once, whole
    assert r.lost_contact == {"0": "[gloo] Timed out waiting 10000ms for recv operation to complete"}
