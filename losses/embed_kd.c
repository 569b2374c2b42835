/* embed_kd — CLIP-Embed-KD (Nair 2024): the teacher never runs; one cached
 * centroid per class (K×Dt) stands in for it. The student's image embedding
 * is classified by its cosines with the centroids mapped to the student
 * width by a learned W (Dt×Ds, stored as `proj_img.weight`):
 *   z_k = n(s_img) · n(c_k W),   loss = CE(z, y),
 * with no temperature (the method's choice: raw cosines). W always exists —
 * it is the method's learned map, not a width adapter — and, like the
 * reference, has no bias.
 *
 * The host computes the centroids (see CKD_NEED_CENTROIDS in
 * clipkd/plugin.h): c_k is the mean normalised teacher image embedding of
 * the first centroid_images training images of class k — the method's n,
 * 100 — a parameter this plugin only declares. */
#include "common.h"

#define EMBED_KD_READS (CKD_NEED_S_IMG | CKD_NEED_CENTROIDS | CKD_NEED_LABELS)

#define EMBED_KD_SCHEMA                                                                                     \
    "{\"type\":\"object\",\"properties\":{\"centroid_images\":{\"type\":\"integer\",\"default\":100,"       \
    "\"minimum\":0,\"description\":\"training images per class (the first, in dataset order) whose mean "   \
    "normalised teacher embedding is the class centroid; 0 takes every image of the class\"}}}"

static int embed_kd_create(const ckd_params *params, const ckd_loss_dims *dims, ckd_rng *rng, void **out,
                           ckd_error *err)
{
    (void)params;
    ckdl_state *s = ckdl_state_new("embed_kd", dims, err);
    /* fan_in Dt: W takes a Dt-wide centroid to the student width. */
    if (!s || ckdl_need_dims(s, 1, err) || ckdl_add_matrix(s, "proj_img", s->t_dim, s->s_dim, s->t_dim, 0, rng, err))
        return ckdl_fail_create(s, out);
    *out = s;
    return 0;
}

static ckd_tensor *embed_kd_forward(void *state, ckd_ctx *c, const ckd_loss_batch *b)
{
    ckdl_state *s = state;
    if (!ckdl_check_batch(c, s, b, EMBED_KD_READS))
        return NULL;
    ckd_tensor *mapped = ckdl_norm(c, ckd_matmul(c, b->centroids, ckdl_find(s, "proj_img", "weight")));
    ckd_tensor *z = ckdl_sim(c, ckdl_student_n(c, b->s_img, b->s_img_n), mapped, NULL);
    return ckd_cross_entropy(c, z, b->labels);
}

CKDL_LOSS_PLUGIN("embed_kd", "Embed-KD: cross-entropy of cosines between the student and mapped teacher class "
                             "centroids (CLIP-Embed-KD)",
                 EMBED_KD_SCHEMA, EMBED_KD_READS, embed_kd_create, embed_kd_forward)
