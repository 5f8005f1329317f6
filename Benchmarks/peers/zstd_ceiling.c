/* The physical ceiling for `telematics decode --count`: only the zstd work
 * every decoder must do, with no parsing or validation at all. A decoder
 * cannot beat this on one core, so ours/ceiling says how much of the time
 * goes to everything else.
 *
 *   zstd_ceiling FILE.tmcap [--dict-dir DIR] [--repeat N]
 *   build: cc -O2 -o zstd_ceiling zstd_ceiling.c -lzstd
 *
 * Prints {"records":N,"seconds":S,"records_per_second":X,...}; the time
 * covers only the decompression loop (file reading and dictionary loading
 * are excluded), best of --repeat passes, single-threaded.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

#define MAX_BODY (1u << 20)
#define MAX_DICTS 64

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(1); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc(n > 0 ? (size_t)n : 1);
    if (!p || fread(p, 1, (size_t)n, f) != (size_t)n) { fprintf(stderr, "read %s failed\n", path); exit(1); }
    fclose(f);
    *len = (size_t)n;
    return p;
}

static ZSTD_DDict *ddicts[MAX_DICTS];
static unsigned dict_ids[MAX_DICTS];
static int n_dicts;

static void load_dicts(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) { perror(dir); exit(1); }
    struct dirent *e;
    while ((e = readdir(d)) && n_dicts < MAX_DICTS) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 5, ".dict") != 0) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t len;
        unsigned char *raw = read_file(path, &len);
        dict_ids[n_dicts] = ZSTD_getDictID_fromDict(raw, len);
        ddicts[n_dicts++] = ZSTD_createDDict(raw, len); /* copies raw */
        free(raw);
    }
    closedir(d);
}

static ZSTD_DDict *find_dict(unsigned id) {
    for (int i = 0; i < n_dicts; i++)
        if (dict_ids[i] == id) return ddicts[i];
    return NULL;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    const char *file = NULL, *dict_dir = NULL;
    int repeat = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dict-dir") && i + 1 < argc) dict_dir = argv[++i];
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) repeat = atoi(argv[++i]);
        else file = argv[i];
    }
    if (!file || repeat < 1) {
        fprintf(stderr, "usage: %s FILE.tmcap [--dict-dir DIR] [--repeat N]\n", argv[0]);
        return 2;
    }
    if (dict_dir) load_dicts(dict_dir);
    size_t len;
    unsigned char *data = read_file(file, &len);
    unsigned char *out = malloc(MAX_BODY);
    ZSTD_DCtx *dctx = ZSTD_createDCtx();

    double best = 1e300;
    uint64_t records = 0, compressed = 0, failed = 0, out_bytes = 0, touch = 0;
    for (int r = 0; r < repeat; r++) {
        records = compressed = failed = out_bytes = touch = 0;
        double t0 = now();
        for (size_t i = 0; i + 4 <= len;) {
            uint32_t n = (uint32_t)data[i] | (uint32_t)data[i + 1] << 8
                       | (uint32_t)data[i + 2] << 16 | (uint32_t)data[i + 3] << 24;
            const unsigned char *rec = data + i + 4;
            i += 4 + (size_t)n;
            if (i > len) break; /* cut-off record at the end of the file */
            records++;
            if (n < 48) continue;
            const unsigned char *body = rec + 48;
            size_t blen = n - 48;
            if (rec[4] & 1) {
                compressed++;
                size_t got = ZSTD_decompress_usingDDict(dctx, out, MAX_BODY, body, blen,
                                                        find_dict(ZSTD_getDictID_fromFrame(body, blen)));
                if (ZSTD_isError(got)) failed++;
                else { out_bytes += got; touch += got ? out[0] : 0; }
            } else if (blen) {
                touch += body[0]; /* an uncompressed body needs no work at all */
                out_bytes += blen;
            }
        }
        double s = now() - t0;
        if (s < best) best = s;
    }
    printf("{\"records\":%llu,\"compressed\":%llu,\"failed\":%llu,\"body_bytes\":%llu,"
           "\"seconds\":%.6f,\"records_per_second\":%.1f,\"repeat\":%d,\"touch\":%llu}\n",
           (unsigned long long)records, (unsigned long long)compressed, (unsigned long long)failed,
           (unsigned long long)out_bytes, best, (double)records / best, repeat,
           (unsigned long long)touch);
    ZSTD_freeDCtx(dctx);
    free(out);
    free(data);
    return 0;
}
