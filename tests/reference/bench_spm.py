#!/usr/bin/env python3
"""The sentencepiece library's encoder throughput on the same text as bench/bench_tok.c:
each line encoded (sp.encode), one thread, then the lines as one batch on two threads.
usage: python3 tests/reference/bench_spm.py TOKENIZER.model TEXT"""
import sys, time
import sentencepiece as spm

sp = spm.SentencePieceProcessor(model_file=sys.argv[1])
data = open(sys.argv[2], 'rb').read()
lines = data.split(b'\n')
def best(f, reps=3):
    b = 1e30
    for _ in range(reps):
        t0 = time.perf_counter(); r = f(); b = min(b, time.perf_counter() - t0)
    return b, r
s1, r1 = best(lambda: sum(len(sp.encode(l)) for l in lines))
s2, r2 = best(lambda: sum(len(x) for x in sp.encode(lines, num_threads=2)))
print('sentencepiece %s: 1 thread %.2f MB/s (%d tokens), batch on 2 threads %.2f MB/s'
      % (spm.__version__, len(data) / 1e6 / s1, r1, len(data) / 1e6 / s2))
