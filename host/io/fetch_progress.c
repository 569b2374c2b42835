/* The two ready-made progress renderers of ckd_fetch: a redrawn bar for a
 * terminal and plain periodic lines for logs. They are the only code in the
 * fetch area that prints, and only to the FILE * the caller hands them. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>

#include "clipkd/fetch.h"

static void human_bytes(char *b, size_t cap, double v)
{
    static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    snprintf(b, cap, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

static void eta_text(char *b, size_t cap, int64_t now, int64_t total, double rate)
{
    if (total < 0 || rate <= 0 || now > total) {
        snprintf(b, cap, "--:--");
        return;
    }
    double s = (double)(total - now) / rate;
    if (s > 99 * 3600.0) {
        snprintf(b, cap, ">99h");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(b, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(b, cap, "%ld:%02ld", t / 60, t % 60);
}

void ckd_fetch_progress_tty(void *user, const char *name, int64_t now, int64_t total,
                            double rate_Bps)
{
    FILE *f = user ? user : stderr;
    if (now < 0) { /* the attempt failed: end the line that \r kept redrawing */
        fputs("\n", f);
        fflush(f);
        return;
    }
    char have[32], all[32], rate[32], eta[32], bar[31];
    human_bytes(have, sizeof have, (double)now);
    human_bytes(all, sizeof all, (double)(total < 0 ? 0 : total));
    human_bytes(rate, sizeof rate, rate_Bps > 0 ? rate_Bps : 0);
    eta_text(eta, sizeof eta, now, total, rate_Bps);
    double frac = total > 0 ? (double)now / (double)total : (total == 0 ? 1.0 : 0.0);
    if (frac > 1)
        frac = 1;
    int fill = (int)(frac * 30);
    for (int i = 0; i < 30; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[30] = '\0';
    /* \033[K clears what a longer previous line left behind. */
    fprintf(f, "\r%-24.24s %3d%% [%s] %s/%s %s/s ETA %s\033[K", name ? name : "",
            (int)(frac * 100), bar, have, total < 0 ? "?" : all, rate, eta);
    if (total >= 0 && now >= total)
        fputs("\n", f);
    fflush(f);
}

void ckd_fetch_progress_log(void *user, const char *name, int64_t now, int64_t total,
                            double rate_Bps)
{
    FILE *f = user ? user : stderr;
    if (!name)
        name = "";
    if (now < 0) {
        fprintf(f, "fetch %s: transfer attempt failed\n", name);
        fflush(f);
        return;
    }
    char have[32], all[32], rate[32], eta[32];
    human_bytes(have, sizeof have, (double)now);
    human_bytes(all, sizeof all, (double)(total < 0 ? 0 : total));
    human_bytes(rate, sizeof rate, rate_Bps > 0 ? rate_Bps : 0);
    eta_text(eta, sizeof eta, now, total, rate_Bps);
    if (total >= 0 && now >= total)
        fprintf(f, "fetch %s: done, %s\n", name, all);
    else if (total > 0)
        fprintf(f, "fetch %s: %s of %s (%d%%), %s/s, ETA %s\n", name, have, all,
                (int)(100.0 * (double)now / (double)total), rate, eta);
    else
        fprintf(f, "fetch %s: %s, %s/s\n", name, have, rate);
    fflush(f);
}
