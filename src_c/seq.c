/* Variable lengths and resets: schedule checks, slot-layout copies, event
 * helpers (see seq.h). */
#include <string.h>
#include "seq.h"

int fbp_seq_check(const fbp_seq *seq, int T, int B, ptrdiff_t *events)
{
    *events = 0;
    if (T < 0 || B < 0) return FBP_ERR_ARG;
    if (!seq) return FBP_OK;
    if (seq->rows) {
        int prev = B;
        for (int t = 0; t < T; t++) {
            const int n = seq->rows[t];
            if (n < 0 || n > prev) return FBP_ERR_ARG;
            prev = n;
        }
    }
    if (seq->reset_ptr) {
        if (!seq->reset_rows && T > 0 && seq->reset_ptr[T] != 0) return FBP_ERR_ARG;
        if (seq->reset_ptr[0] != 0) return FBP_ERR_ARG;
        for (int t = 0; t < T; t++) {
            const int a = seq->reset_ptr[t], b = seq->reset_ptr[t + 1];
            if (b < a || (t == 0 && b != a)) return FBP_ERR_ARG;   /* no events at t = 0 */
            const int n = fbp_seq_rows(seq, t, B);
            int last = -1;
            for (int k = a; k < b; k++) {
                const int r = seq->reset_rows[k];
                if (r <= last || r >= n) return FBP_ERR_ARG;
                last = r;
            }
        }
        *events = T > 0 ? seq->reset_ptr[T] : 0;
    }
    return FBP_OK;
}

#define REAL float
#define FN(name) name##_f
#include "seq_body.h"
#undef REAL
#undef FN

#define REAL double
#define FN(name) name##_d
#include "seq_body.h"
