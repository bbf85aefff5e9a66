#!/usr/bin/env python3
"""Test vectors for tok/: what the sentencepiece library (0.2.3) itself outputs.

Writes into tests/data (all small):
  tok_rules.model        a BPE model spm_train makes from tok_corpus.txt (the GPL-3 text
                         from Debian's base-files) with byte_fallback and a custom
                         normalization rule table, so its precompiled charsmap is a real
                         darts trie with multi-character keys, small enough to commit
  tok_rules.enc          encode vectors for it: "hex(input)<TAB>ids" per line
  tok_rules.dec          decode vectors: "ids<TAB>hex(sp.decode(ids))"
  tok_train_identity.vocab  spm_train's pieces and scores on tok_corpus.txt (contest
                         settings, identity normalization, vocab 800): quantgolf's trainer
                         must produce the same file
With ../shared/contest present (the files are not ours to commit, only vectors):
  tok_noncontest.enc     encode vectors for the non-contest nmt_nfkc .model
  tok_contest.enc        encode vectors for `quantgolf tokenizer assemble` of the contest
                         .vocab with --normalizer-from that .model (needs QG=path/to/quantgolf)
  tok_train_nfkc.vocab   spm_train with nmt_nfkc normalization (same charsmap as that model)

usage: QG=/tmp/tok-build/quantgolf python3 tests/reference/make_tok_vectors.py
"""
import os, random, subprocess, sys, tempfile
import sentencepiece as spm

here = os.path.dirname(os.path.abspath(__file__))
data = os.path.join(here, '..', 'data')
contest = os.path.join(here, '..', '..', '..', 'shared', 'contest')
corpus = os.path.join(data, 'tok_corpus.txt')
noncontest = os.path.join(contest, 'noncontest_sp1024_nobytefallback_CiprianFlorin-Ifrim.model')
tmp = tempfile.mkdtemp()

CONTEST = dict(model_type='bpe', character_coverage=0.999, byte_fallback=True, split_digits=True,
               add_dummy_prefix=False, pad_id=0, bos_id=1, eos_id=2, unk_id=3,
               hard_vocab_limit=False, num_threads=1, minloglevel=2)

# normalization rules: source code points -> target code points (hex, space separated)
RULES = [('41 42', '61 62'),        # "AB" -> "ab": a two-character key
         ('41 42 43', '78'),        # "ABC" -> "x": longest match wins over "AB"
         ('FB01', '66 69'),         # ligature fi -> "fi"
         ('9', '20'),               # TAB -> space (then whitespace rules apply)
         ('3000', '20'),            # ideographic space -> space
         ('FF21', '41'),            # fullwidth A -> "A" (not re-normalized)
         ('E9', '65 301'),          # e-acute -> e + combining acute
         ('2460', '31'),            # circled one -> "1"
         ('44', '64 64 64'),        # "D" -> "ddd": expansion
         ('7E', '')]                # "~" -> nothing? (empty targets are dropped below)


def rand_texts(rng, n):
    alph = ['a', 'b', 'e', 'th', 'the ', ' ', '  ', '\t', '\r', '\x00', '\x01', '\x7f', '1', '23',
            '456', '.', ',', "'", '"', 'A', 'AB', 'ABC', 'D', '~', 'ﬁ', 'Ａ', '①', '\u3000',
            '\u00a0', 'é', 'Ü', 'ß', '日本', '語', 'ｶ', '\u0301', '😀', '▁', '<s>', '<unk>',
            '<0x41>', 'Program', 'License', 'ing', ' software', '\ufffd', '\u200b', '\u2585']
    raw = [b'\xff', b'\xc3', b'\xe2\x96', b'\xed\xa0\x80', b'\xf4\x90\x80\x80', b'\xc0\xaf',
           b'\xf0\x9f\x98']
    out = [b'', b' ', b'   ', b'\t\t', b'a', b'\xff', b'12345678', b'A  B', b'\xe2\x96\x81']
    while len(out) < n:
        parts = []
        for _ in range(rng.randint(0, 24)):
            parts.append(rng.choice(raw) if rng.random() < 0.06 else rng.choice(alph).encode())
        out.append(b''.join(parts))
    return out


def corpus_lines(n, rng):
    lines = [l for l in open(corpus, 'rb').read().split(b'\n')]
    return [rng.choice(lines) for _ in range(n)]


def write_enc(path, model, texts):
    sp = spm.SentencePieceProcessor(model_file=model)
    with open(path, 'w') as f:
        for t in texts:
            f.write(t.hex() + '\t' + ' '.join(map(str, sp.encode(t))) + '\n')


def write_dec(path, model, rng, n):
    sp = spm.SentencePieceProcessor(model_file=model)
    size = sp.get_piece_size()
    with open(path, 'w') as f:
        seqs = [[], [1], [1, 2], [4 + 0xE2, 4 + 0x96], [4 + 0xE2, 4 + 0x96, 4 + 0x81],
                [4 + 0xFF, 4 + 0x41], [3, 3]]
        while len(seqs) < n:
            k = rng.randint(1, 12)
            seqs.append([rng.randrange(size) if rng.random() < 0.7 else rng.choice([0, 1, 2, 3, 4 + rng.randrange(256)])
                         for _ in range(k)])
        for s in seqs:
            f.write(' '.join(map(str, s)) + '\t' + sp.decode(s).encode('utf-8', 'surrogatepass').hex() + '\n')


def train(prefix, **kw):
    spm.SentencePieceTrainer.train(input=corpus, model_prefix=prefix, **{**CONTEST, **kw})


def main():
    rng = random.Random(20240520)
    rules = os.path.join(tmp, 'rules.tsv')
    with open(rules, 'w') as f:
        for src, dst in RULES:
            if dst:
                f.write(src + '\t' + dst + '\n')
    train(os.path.join(tmp, 'rules'), vocab_size=600, normalization_rule_tsv=rules)
    os.replace(os.path.join(tmp, 'rules.model'), os.path.join(data, 'tok_rules.model'))
    model = os.path.join(data, 'tok_rules.model')
    write_enc(os.path.join(data, 'tok_rules.enc'), model, rand_texts(rng, 700) + corpus_lines(100, rng))
    write_dec(os.path.join(data, 'tok_rules.dec'), model, rng, 300)
    train(os.path.join(tmp, 'ident'), vocab_size=800, normalization_rule_name='identity')
    os.replace(os.path.join(tmp, 'ident.vocab'), os.path.join(data, 'tok_train_identity.vocab'))
    if os.path.exists(noncontest):
        write_enc(os.path.join(data, 'tok_noncontest.enc'), noncontest, rand_texts(rng, 400) + corpus_lines(50, rng))
        train(os.path.join(tmp, 'nfkc'), vocab_size=800, normalization_rule_name='nmt_nfkc')
        os.replace(os.path.join(tmp, 'nfkc.vocab'), os.path.join(data, 'tok_train_nfkc.vocab'))
        qg = os.environ.get('QG')
        if qg:
            assembled = os.path.join(tmp, 'contest.model')
            subprocess.run([qg, 'tokenizer', 'assemble', '--vocab',
                            os.path.join(contest, 'fineweb_1024_bpe.vocab'), '--normalizer-from',
                            noncontest, '--out', assembled], check=True)
            write_enc(os.path.join(data, 'tok_contest.enc'), assembled, rand_texts(rng, 400) + corpus_lines(50, rng))
        else:
            print('QG not set: tok_contest.enc not written', file=sys.stderr)


if __name__ == '__main__':
    main()
