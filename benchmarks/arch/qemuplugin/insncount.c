/*
 * insncount: a QEMU TCG plugin (plugin API version 1, QEMU 7.2 and later
 * releases that still accept it) that counts the guest instructions a
 * user-mode program executes, over all its threads, and writes the total in
 * decimal to the file named by its "out" argument when the program exits.
 *
 *   qemu-s390x -plugin ./libinsncount.so,out=/tmp/count ./program
 *
 * Debian's qemu-user supports plugins but ships none, and no header: the few
 * declarations it needs are written here. The benchmark runner compiles it
 * with `cc -shared -fPIC`.
 *
 * Each translated block gets a callback that adds its instruction count to
 * a counter of the executing vCPU (a guest thread). Counters are per vCPU so
 * that concurrent threads never race on one: a shared inline counter, the
 * cheaper option of API version 1, loses updates under Go's many threads.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
typedef struct qemu_info qemu_info_t;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS = 0 };

typedef void (*tb_trans_cb)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*vcpu_udata_cb)(unsigned int vcpu_index, void *userdata);
typedef void (*udata_cb)(qemu_plugin_id_t id, void *userdata);

extern void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, tb_trans_cb cb);
extern void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, vcpu_udata_cb cb,
                                                 enum qemu_plugin_cb_flags flags, void *userdata);
extern size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
extern void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, udata_cb cb, void *userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

/* One counter per vCPU, each on its own cache line. A vCPU index beyond
 * the table (a program with more live threads than that) shares the last
 * slot through atomic adds. */
#define MAX_VCPUS 1024
static struct {
    uint64_t n;
    char pad[56];
} counters[MAX_VCPUS];

static char out_path[4096];

static void on_tb_exec(unsigned int vcpu, void *userdata)
{
    uint64_t n = (uint64_t)(uintptr_t)userdata;
    if (vcpu < MAX_VCPUS - 1) {
        counters[vcpu].n += n;
    } else {
        __atomic_fetch_add(&counters[MAX_VCPUS - 1].n, n, __ATOMIC_RELAXED);
    }
}

static void on_tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    uintptr_t n = qemu_plugin_tb_n_insns(tb);
    qemu_plugin_register_vcpu_tb_exec_cb(tb, on_tb_exec, QEMU_PLUGIN_CB_NO_REGS, (void *)n);
}

static void on_program_exit(qemu_plugin_id_t id, void *userdata)
{
    (void)id;
    (void)userdata;
    uint64_t total = 0;
    for (int i = 0; i < MAX_VCPUS; i++) {
        total += __atomic_load_n(&counters[i].n, __ATOMIC_RELAXED);
    }
    FILE *f = fopen(out_path, "w");
    if (f == NULL) {
        perror("insncount: open out file");
        return;
    }
    fprintf(f, "%llu\n", (unsigned long long)total);
    fclose(f);
}

__attribute__((visibility("default")))
int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0 && strlen(argv[i] + 4) < sizeof(out_path)) {
            strcpy(out_path, argv[i] + 4);
        }
    }
    if (out_path[0] == '\0') {
        fprintf(stderr, "insncount: missing argument out=FILE\n");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb_trans);
    qemu_plugin_register_atexit_cb(id, on_program_exit, NULL);
    return 0;
}
