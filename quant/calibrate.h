/* Calibration for GPTQ: choosing calibration sequences (from token shards, or sampled
 * from the model itself as the contest's "AR self-generated" calibration does) and
 * collecting the Hessian H = (2/n) sum x x^T at every linear layer's input in one forward
 * pass per batch, through the model's tap (model/gpt.h). */
#ifndef QG_QUANT_CALIBRATE_H
#define QG_QUANT_CALIBRATE_H

#include "comm/comm.h"
#include "io/shards.h"
#include "model/gpt.h"
#include "quant/hessian.h"

/* n sequences of len tokens each, drawn from the token stream at seeded random,
 * non-overlapping positions in [skip, end), in stream order. */
qg_status qg_calib_from_shards(const qg_shards *s, int n, int len, uint64_t seed, int64_t skip, int32_t *out);
/* n sequences of len tokens sampled from the model at `temperature`, each starting at
 * token `bos` (the contest's BOS is 1), with a seeded generator. Cost grows as len^2
 * (no KV cache): meant for short sequences on the CPU. */
qg_status qg_calib_generate(qg_gpt *m, int n, int len, float temperature, uint64_t seed, int bos, int32_t *out);
/* Runs the model over the sequences (batch of them at a time) and accumulates every
 * linear layer's input Hessian into map, keyed by weight name; finalizes the map. */
qg_status qg_calib_hessians(qg_gpt *m, const int32_t *seqs, int n, int len, int batch, qg_hessian_map *map);
/* The same over the ranks of comm (each running this with the same sequences): batches
 * split round-robin, every batch's sums folded in batch order in fp64, so every rank gets
 * the same Hessians whatever the world size (they may differ from qg_calib_hessians' in
 * the last bits: that one sums all batches into one accumulator). */
qg_status qg_calib_hessians_comm(qg_gpt *m, const int32_t *seqs, int n, int len, int batch, qg_comm *comm,
                                 qg_hessian_map *map);

#endif
