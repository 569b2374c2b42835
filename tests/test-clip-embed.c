/* `clipkd embed`: the built program, run on a fixture model directory, writes
 * text embeddings equal to transformers' (tokenizer + model end to end) and
 * image embeddings equal to the library's preprocessing + model; bad
 * invocations exit 2 with a message. */
#include "config.h"

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* mkdtemp */
#endif

#include <sys/wait.h>
#include <unistd.h>

#include "clip_test_util.h"
#include "clipkd/image.h"

#define MODEL "hf-clip/tiny-clip-quickgelu"

/* clipkd embed ARGS (see test_run_clipkd). */
static int run_clipkd(const char *args, char *err_out, size_t cap)
{
    char cmd[8200];
    snprintf(cmd, sizeof cmd, "embed %s", args);
    return test_run_clipkd(cmd, err_out, cap);
}

Test(embed, writes_hf_text_embeddings_and_image_embeddings)
{
    char *dir = strdup("/tmp/ckd-embed-test-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char out[4200], args[8192], msg[4096];
    snprintf(out, sizeof out, "%s/e.safetensors", dir);
    /* reference captions 0 and 4 (the empty string) */
    snprintf(args, sizeof args, "'%s' --text 'a photo of a dog.' --image '%s' --text '' --out '%s'", fixture(MODEL),
             fixture("preprocess/img1_64x32.png"), out);
    int rc = run_clipkd(args, msg, sizeof msg);
    cr_assert_eq(rc, 0, "clipkd embed failed (%d): %s", rc, msg);

    ckd_safetensors *got = open_st(out);
    ckd_safetensors *ref = open_st(fixture(MODEL "/reference.safetensors"));
    const ckd_st_tensor *tt, *rt, *it;
    float *t = ref_f32(got, "text_embeds", &tt), *r = ref_f32(ref, "text_embeds", &rt);
    cr_assert_eq(tt->shape[0], 2);
    int64_t E = tt->shape[1];
    const int rows[2] = {0, 4};
    for (int i = 0; i < 2; i++)
        for (int64_t k = 0; k < E; k++)
            cr_expect(fabs(t[i * E + k] - r[rows[i] * E + k]) < 1e-5, "text %d [%lld]: %g vs %g", i, (long long)k,
                      t[i * E + k], r[rows[i] * E + k]);
    cr_expect_str_eq(ckd_st_metadata(got, "texts"), "[\"a photo of a dog.\",\"\"]");

    /* the image through the library */
    open_registry();
    ckd_model *m = load_fixture_model("tiny-clip-quickgelu");
    ckd_error err = {{0}};
    ckd_image img = {0};
    cr_assert_eq(ckd_image_load(fixture("preprocess/img1_64x32.png"), &img, &err), 0, "%s", err.msg);
    ckd_preprocess pp;
    ckd_preprocess_clip_default(&pp, 32);
    float px[3 * 32 * 32];
    cr_assert_eq(ckd_preprocess_image(&pp, &img, px, &err), 0, "%s", err.msg);
    ckd_image_free(&img);
    ckd_ctx *c = new_ctx();
    ckd_tensor *e = ckd_l2_normalize(
        c, ckd_model_encode_image(m, c, ckd_tensor_from(c, 4, (int64_t[]){1, 3, 32, 32}, px), 1.0f, NULL), 1e-12f);
    cr_assert_not_null(e, "%s", ckd_ctx_error(c));
    float *g = ref_f32(got, "image_embeds", &it);
    cr_assert_eq(it->shape[0], 1);
    for (int64_t k = 0; k < E; k++)
        cr_expect_eq(g[k], e->data[k], "image [%lld]", (long long)k);
    free(g);
    free(t);
    free(r);
    ckd_ctx_free(c);
    ckd_model_free(m);
    close_registry();
    ckd_st_close(got);
    ckd_st_close(ref);
    snprintf(args, sizeof args, "rm -rf '%s'", dir);
    cr_expect_eq(system(args), 0);
    free(dir);
}

Test(embed, bad_invocations_exit_2_with_a_message)
{
    char msg[4096], args[8192];
    cr_expect_eq(run_clipkd("", msg, sizeof msg), 2);
    cr_expect(strstr(msg, "no MODEL_DIR") != NULL, "%s", msg);
    snprintf(args, sizeof args, "'%s'", fixture(MODEL));
    cr_expect_eq(run_clipkd(args, msg, sizeof msg), 2);
    cr_expect(strstr(msg, "nothing to embed") != NULL, "%s", msg);
    snprintf(args, sizeof args, "'%s' --image '%s'", fixture(MODEL), fixture("no-such.png"));
    cr_expect_eq(run_clipkd(args, msg, sizeof msg), 2);
    cr_expect(strstr(msg, "no-such.png") != NULL, "%s", msg);
    snprintf(args, sizeof args, "'%s' --text hi", fixture("preprocess"));
    cr_expect_eq(run_clipkd(args, msg, sizeof msg), 2);
    cr_expect(strstr(msg, "not a model directory") != NULL, "%s", msg);
}
