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
 * 100 — a parameter this plugin only declares.
 *
 * Two controls the paper lacks ("centroids"), to tell whether the teacher's
 * knowledge is what helps or only a class-prototype classifier on cosines:
 *   "random":  c_k = n(g_k), g_k ~ N(0, I_Dt) drawn from ckd_rng seeded with
 *              `seed` — fixed for the run, the same on resume;
 *   "student": c_k = the mean of n(s_img) over the batch's samples of class
 *              k, a constant (no gradient flows through it; 0 for a class
 *              absent from the batch), and W is Ds×Ds.
 * The default, "teacher", is the method. */
#include "common.h"

#define EMBED_KD_READS (CKD_NEED_S_IMG | CKD_NEED_CENTROIDS | CKD_NEED_LABELS)

static const char *const embed_kd_modes[] = {"teacher", "random", "student"};
enum { EMBED_KD_TEACHER, EMBED_KD_RANDOM, EMBED_KD_STUDENT };

#define EMBED_KD_SCHEMA                                                                                     \
    "{\"type\":\"object\",\"properties\":{\"centroid_images\":{\"type\":\"integer\",\"default\":100,"       \
    "\"minimum\":0,\"description\":\"training images per class (the first, in dataset order) whose mean "   \
    "normalised teacher embedding is the class centroid; 0 takes every image of the class\"},"              \
    "\"centroids\":{\"type\":\"string\",\"enum\":[\"teacher\",\"random\",\"student\"],\"description\":"     \
    "\"teacher (the default: the method), or a control: random unit vectors, or the student's own class "  \
    "means over the batch (no gradient through them)\"},"                                                  \
    "\"seed\":{\"type\":\"integer\",\"minimum\":0,\"description\":\"the random centroids' seed (default 0)\"}}}"

static int random_centroids(ckdl_state *s, uint64_t seed, ckd_error *err)
{
    int64_t K = s->n_classes, D = s->t_dim;
    if (K <= 0)
        return ckd_errorf(err, "embed_kd: random centroids need the number of classes");
    if (!(s->fixed = malloc((size_t)(K * D) * sizeof *s->fixed)))
        return ckd_errorf(err, "embed_kd: out of memory");
    ckd_rng r;
    ckd_rng_seed(&r, seed);
    for (int64_t k = 0; k < K; k++) {
        double n2 = 0;
        for (int64_t d = 0; d < D; d++) {
            double g = ckd_rng_normal(&r);
            s->fixed[k * D + d] = (float)g;
            n2 += g * g;
        }
        for (int64_t d = 0; d < D; d++)
            s->fixed[k * D + d] = (float)(s->fixed[k * D + d] / sqrt(n2));
    }
    return 0;
}

static int embed_kd_create(const ckd_params *params, const ckd_loss_dims *dims, ckd_rng *rng, void **out,
                           ckd_error *err)
{
    ckdl_state *s = ckdl_state_new("embed_kd", dims, err);
    if (!s || ckdl_need_dims(s, 1, err) || ckdl_read_enum(s, params, "centroids", embed_kd_modes, 3, err))
        return ckdl_fail_create(s, out);
    /* W takes a centroid (Dt wide; the student's own Ds) to the student width. */
    int64_t in = s->option == EMBED_KD_STUDENT ? s->s_dim : s->t_dim;
    if (ckdl_add_matrix(s, "proj_img", in, s->s_dim, in, 0, rng, err) ||
        (s->option == EMBED_KD_RANDOM &&
         random_centroids(s, (uint64_t)ckd_params_number(params, "seed", 0), err)))
        return ckdl_fail_create(s, out);
    *out = s;
    return 0;
}

/* The mean of the rows of x [N, D] per label, a constant [K, D]. */
static ckd_tensor *class_means(ckd_ctx *c, const ckd_tensor *x, const int32_t *labels, int64_t K)
{
    int64_t N = x->shape[0], D = x->shape[1];
    ckd_tensor *m = ckd_tensor_new(c, 2, (int64_t[]){K, D});
    int64_t *count = ckd_scratch(c, (size_t)K * sizeof *count, "class counts");
    if (!m || !count)
        return NULL;
    memset(m->data, 0, (size_t)(K * D) * sizeof(float));
    memset(count, 0, (size_t)K * sizeof *count);
    for (int64_t i = 0; i < N; i++) {
        if (labels[i] < 0 || labels[i] >= K)
            continue;
        count[labels[i]]++;
        for (int64_t d = 0; d < D; d++)
            m->data[labels[i] * D + d] += x->data[i * D + d];
    }
    for (int64_t k = 0; k < K; k++)
        for (int64_t d = 0; d < D && count[k]; d++)
            m->data[k * D + d] /= (float)count[k];
    return m;
}

static ckd_tensor *embed_kd_forward(void *state, ckd_ctx *c, const ckd_loss_batch *b)
{
    ckdl_state *s = state;
    if (!ckdl_check_batch(c, s, b, EMBED_KD_READS))
        return NULL;
    ckd_tensor *sn = ckdl_student_n(c, b->s_img, b->s_img_n), *cent = b->centroids;
    if (s->option == EMBED_KD_RANDOM) {
        if ((cent = ckd_tensor_new(c, 2, (int64_t[]){s->n_classes, s->t_dim})))
            memcpy(cent->data, s->fixed, (size_t)(s->n_classes * s->t_dim) * sizeof(float));
    } else if (s->option == EMBED_KD_STUDENT) {
        cent = sn ? class_means(c, sn, b->labels, b->centroids->shape[0]) : NULL;
    }
    if (!cent)
        return ckd_ctx_fail(c, "embed_kd: out of memory for the centroids");
    ckd_tensor *mapped = ckdl_norm(c, ckd_matmul(c, cent, ckdl_find(s, "proj_img", "weight")));
    return ckd_cross_entropy(c, ckdl_sim(c, sn, mapped, NULL), b->labels);
}

CKDL_LOSS_PLUGIN("embed_kd", "Embed-KD: cross-entropy of cosines between the student and mapped teacher class "
                             "centroids (CLIP-Embed-KD)",
                 EMBED_KD_SCHEMA, EMBED_KD_READS, embed_kd_create, embed_kd_forward)
