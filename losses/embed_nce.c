/* embed_nce — "teacher KD" of CLIP-Embed-KD (Nair 2024), the setting its
 * class centroids are measured against: a one-directional InfoNCE between
 * the student's image embeddings and the teacher's embeddings of the same
 * batch, each teacher embedding mapped to the student width by a learned W
 * (Dt×Ds, `proj_img.weight`, no bias) as embed_kd maps its centroids:
 *   z_ij = n(s_i) · n(t_j W) / τ,   loss = CE(z, diag) = −mean_i log softmax_j(z_ij)[i].
 * It is embed_kd with the batch's own teacher embeddings in place of the
 * class centroids and the sample in place of its class (τ = 1, the
 * default, keeps embed_kd's raw cosines), so the two differ only in what
 * the teacher gives: an embedding per sample — a live teacher, or the
 * teacher-embedding cache — or one per class. */
#include "common.h"

#define EMBED_NCE_READS (CKD_NEED_S_IMG | CKD_NEED_T_IMG)

static int embed_nce_create(const ckd_params *params, const ckd_loss_dims *dims, ckd_rng *rng, void **out,
                            ckd_error *err)
{
    ckdl_state *s = ckdl_state_new("embed_nce", dims, err);
    if (!s || ckdl_need_dims(s, 1, err) || ckdl_read_tau(s, params, 1.0, err) ||
        ckdl_add_matrix(s, "proj_img", s->t_dim, s->s_dim, s->t_dim, 0, rng, err))
        return ckdl_fail_create(s, out);
    *out = s;
    return 0;
}

static ckd_tensor *embed_nce_forward(void *state, ckd_ctx *c, const ckd_loss_batch *b)
{
    ckdl_state *s = state;
    if (!ckdl_check_batch(c, s, b, EMBED_NCE_READS))
        return NULL;
    ckd_tensor *mapped = ckdl_norm(c, ckd_matmul(c, b->t_img, ckdl_find(s, "proj_img", "weight")));
    ckd_tensor *z = ckdl_sim(c, ckdl_student_n(c, b->s_img, b->s_img_n), mapped, NULL);
    if (s->tau != 1.0)
        z = ckd_scale(c, z, (float)(1.0 / s->tau));
    return ckdl_ce_diag(c, z);
}

CKDL_LOSS_PLUGIN("embed_nce",
                 "Embed-NCE: one-directional InfoNCE between the student and the mapped teacher embeddings of the "
                 "batch (CLIP-Embed-KD's teacher KD)",
                 "{\"type\":\"object\",\"properties\":{" CKDL_SCHEMA_TAU_PROP(1, "softmax temperature of the "
                                                                                 "cosines (1: raw cosines, as embed_kd)") "}}",
                 EMBED_NCE_READS, embed_nce_create, embed_nce_forward)
