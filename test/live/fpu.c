// SPDX-License-Identifier: MIT
/*
 * Registers held across the freeze.  One asm statement loads distinct patterns into every
 * vector register (zmm0-31 and k1-k7 with AVX-512, else ymm0-15), into rbx and r8-r15 and onto
 * the x87 stack, then spins in user space until SIGTERM, then stores them all back; every bit
 * must be as loaded.  The SIGTERM handler runs in between, which is fine: the kernel saves and
 * restores the whole extended state around a handler.  Around that: a non-default MXCSR
 * (rounding up, FTZ, DAZ), x87 control word and sticky exception flags, PKRU, the fs base
 * (TLS) and a gs base of our own must come back too.
 */
#include <asm/prctl.h>
#include <cpuid.h>
#include <fenv.h>
#include <stddef.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "testlib.h"

/* Layout the asm below addresses with fixed offsets. */
struct regs {
	uint64_t vec[32][8]; /* 64 bytes per register, whatever its width */
	uint64_t k[8];
	uint64_t gpr[9]; /* rbx, r8..r15 */
	uint64_t pad;
	long double st[3];
} __attribute__((aligned(64)));

_Static_assert(offsetof(struct regs, k) == 2048, "asm offsets");
_Static_assert(offsetof(struct regs, gpr) == 2112, "asm offsets");
_Static_assert(offsetof(struct regs, st) == 2192, "asm offsets");

static struct regs in, out;
static __thread uint64_t tls_word = 0x7715;
static uint64_t gs_area[4] = {0x65b45e0000000001ull};

#define ZLD(n) "vmovdqu64 " #n "*64(%[in]), %%zmm" #n "\n\t"
#define ZST(n) "vmovdqu64 %%zmm" #n ", " #n "*64(%[out])\n\t"
#define YLD(n) "vmovdqu " #n "*64(%[in]), %%ymm" #n "\n\t"
#define YST(n) "vmovdqu %%ymm" #n ", " #n "*64(%[out])\n\t"
#define KLD(n) "kmovq 2048+" #n "*8(%[in]), %%k" #n "\n\t"
#define KST(n) "kmovq %%k" #n ", 2048+" #n "*8(%[out])\n\t"
/* clang-format off */
#define LO16(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11) M(12) M(13) M(14) M(15)
#define HI16(M) M(16) M(17) M(18) M(19) M(20) M(21) M(22) M(23) M(24) M(25) M(26) M(27) M(28) \
		M(29) M(30) M(31)
/* clang-format on */
#define K7(M) M(1) M(2) M(3) M(4) M(5) M(6) M(7)

#define GPR_LOAD                         \
	"movq 2112+0(%[in]), %%rbx\n\t"  \
	"movq 2112+8(%[in]), %%r8\n\t"   \
	"movq 2112+16(%[in]), %%r9\n\t"  \
	"movq 2112+24(%[in]), %%r10\n\t" \
	"movq 2112+32(%[in]), %%r11\n\t" \
	"movq 2112+40(%[in]), %%r12\n\t" \
	"movq 2112+48(%[in]), %%r13\n\t" \
	"movq 2112+56(%[in]), %%r14\n\t" \
	"movq 2112+64(%[in]), %%r15\n\t" \
	"fldt 2192+0(%[in])\n\t"         \
	"fldt 2192+16(%[in])\n\t"        \
	"fldt 2192+32(%[in])\n\t"

/* Spin without a syscall: the freeze must catch us in user mode with everything live. */
#define SPIN                      \
	"1: cmpl $0, %[flag]\n\t" \
	"jne 2f\n\t"              \
	"pause\n\t"               \
	"jmp 1b\n"                \
	"2:\n\t"

/* The x87 stack pops in reverse order of the loads. */
#define GPR_STORE                         \
	"movq %%rbx, 2112+0(%[out])\n\t"  \
	"movq %%r8, 2112+8(%[out])\n\t"   \
	"movq %%r9, 2112+16(%[out])\n\t"  \
	"movq %%r10, 2112+24(%[out])\n\t" \
	"movq %%r11, 2112+32(%[out])\n\t" \
	"movq %%r12, 2112+40(%[out])\n\t" \
	"movq %%r13, 2112+48(%[out])\n\t" \
	"movq %%r14, 2112+56(%[out])\n\t" \
	"movq %%r15, 2112+64(%[out])\n\t" \
	"fstpt 2192+32(%[out])\n\t"       \
	"fstpt 2192+16(%[out])\n\t"       \
	"fstpt 2192+0(%[out])\n\t"

#define CLOBBERS                                                                                 \
	"memory", "cc", "rbx", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "xmm0",     \
		"xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", \
		"xmm11", "xmm12", "xmm13", "xmm14", "xmm15"

/*
 * zmm16-31 and the k registers are not in the clobber list: this file is built without
 * -mavx512f, so the compiler never keeps anything there.
 */
static void hold_avx512(void)
{
	asm volatile(LO16(ZLD) HI16(ZLD) K7(KLD) GPR_LOAD SPIN GPR_STORE LO16(ZST) HI16(ZST)
			     K7(KST) "vzeroupper\n\t"
		     :
		     : [in] "r"(&in), [out] "r"(&out), [flag] "m"(tl_term)
		     : CLOBBERS);
}

static void hold_avx2(void)
{
	asm volatile(LO16(YLD) GPR_LOAD SPIN GPR_STORE LO16(YST) "vzeroupper\n\t"
		     :
		     : [in] "r"(&in), [out] "r"(&out), [flag] "m"(tl_term)
		     : CLOBBERS);
}

static uint32_t get_mxcsr(void)
{
	uint32_t v;

	asm volatile("stmxcsr %0" : "=m"(v));
	return v;
}

static void set_mxcsr(uint32_t v)
{
	asm volatile("ldmxcsr %0" : : "m"(v));
}

static uint16_t get_x87_cw(void)
{
	uint16_t v;

	asm volatile("fnstcw %0" : "=m"(v));
	return v;
}

static void set_x87_cw(uint16_t v)
{
	asm volatile("fldcw %0" : : "m"(v));
}

static uint16_t get_x87_sw(void)
{
	uint16_t v;

	asm volatile("fnstsw %0" : "=m"(v));
	return v;
}

static uint32_t rdpkru(void)
{
	uint32_t eax, edx;

	asm volatile("rdpkru" : "=a"(eax), "=d"(edx) : "c"(0));
	return eax;
}

static void wrpkru(uint32_t v)
{
	asm volatile("wrpkru" : : "a"(v), "c"(0), "d"(0));
}

/* CPUID.7.0:ECX bit 4: the kernel turned protection keys on, so rdpkru/wrpkru work. */
static bool has_ospke(void)
{
	unsigned int a, b, c, d;

	return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (c & (1u << 4));
}

static uint64_t read_gs0(void)
{
	uint64_t v;

	asm volatile("movq %%gs:0, %0" : "=r"(v));
	return v;
}

static unsigned long arch_get(int code)
{
	unsigned long v = 0;

	if (syscall(SYS_arch_prctl, code, &v))
		tl_fail("arch_prctl(%#x): %m", code);
	return v;
}

static uint64_t div_bits(void)
{
	volatile double a = 1.0, b = 3.0;
	double r = a / b;
	uint64_t bits;

	memcpy(&bits, &r, sizeof(bits));
	return bits;
}

#define MXCSR_DAZ (1u << 6)
#define MXCSR_FTZ (1u << 15)
#define X87_PC_DOUBLE 0x200
#define X87_PC_MASK 0x300
/* 1/3 rounded up, not to nearest (…555). */
#define THIRD_UP 0x3fd5555555555556ull

int main(void)
{
	uint32_t mxcsr, pkru = 0;
	uint16_t cw, sw;
	unsigned long fs, gs;
	uint64_t *tls_addr = &tls_word;
	bool avx512, pku;
	int nregs, bad = 0;

	tl_init();
	__builtin_cpu_init();
	avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
	if (!avx512 && !__builtin_cpu_supports("avx2"))
		tl_fail("neither AVX-512 nor AVX2 on this CPU");
	pku = has_ospke();
	nregs = avx512 ? 32 : 16;

	tl_fill(in.vec, sizeof(in.vec), 0xf00);
	tl_fill(in.k, sizeof(in.k), 0xf01);
	tl_fill(in.gpr, sizeof(in.gpr), 0xf02);
	in.st[0] = 3.14159265358979323846264338327950288L;
	in.st[1] = -2.71828182845904523536028747135266250L;
	in.st[2] = 1e-4000L; /* a denormal-range long double */

	if (fesetround(FE_UPWARD))
		tl_fail("fesetround failed");
	set_mxcsr(get_mxcsr() | MXCSR_DAZ | MXCSR_FTZ);
	set_x87_cw((get_x87_cw() & ~X87_PC_MASK) | X87_PC_DOUBLE);
	feraiseexcept(FE_INEXACT | FE_DIVBYZERO);
	if (pku) {
		/* Flip key 15's write-disable bit: no memory uses key 15, so this is harmless. */
		wrpkru(rdpkru() ^ (1u << 31));
		pkru = rdpkru();
	}
	if (syscall(SYS_arch_prctl, ARCH_SET_GS, (unsigned long)gs_area))
		tl_fail("ARCH_SET_GS: %m");
	tls_word = 0x1234567887654321ull;

	if (div_bits() != THIRD_UP)
		tl_fail("1/3 not rounded up before the dump: %#llx",
			(unsigned long long)div_bits());
	/* After the division: its inexact result sets a sticky flag of its own. */
	mxcsr = get_mxcsr();
	cw = get_x87_cw();
	sw = get_x87_sw() & 0x3f;
	fs = arch_get(ARCH_GET_FS);
	gs = arch_get(ARCH_GET_GS);
	tl_log("%s, mxcsr %#x, x87 cw %#x sw %#x, pkru %#x", avx512 ? "AVX-512" : "AVX2", mxcsr, cw,
	       sw, pkru);

	tl_ready();
	if (avx512)
		hold_avx512();
	else
		hold_avx2();

	for (int r = 0; r < nregs; r++) {
		int bytes = avx512 ? 64 : 32;

		if (memcmp(in.vec[r], out.vec[r], bytes) && !bad++)
			tl_expect(false, "%s%d: %016llx... != %016llx...", avx512 ? "zmm" : "ymm",
				  r, (unsigned long long)out.vec[r][0],
				  (unsigned long long)in.vec[r][0]);
	}
	tl_expect(!bad, "%d vector registers changed", bad);
	if (avx512)
		for (int k = 1; k < 8; k++)
			tl_expect(in.k[k] == out.k[k], "k%d: %#llx != %#llx", k,
				  (unsigned long long)out.k[k], (unsigned long long)in.k[k]);
	for (int g = 0; g < 9; g++)
		tl_expect(in.gpr[g] == out.gpr[g], "general register %d of rbx,r8-r15 changed", g);
	for (int s = 0; s < 3; s++)
		tl_expect(!memcmp(&in.st[s], &out.st[s], 10), "x87 st value %d changed", s);

	tl_expect(get_mxcsr() == mxcsr, "mxcsr %#x != %#x", get_mxcsr(), mxcsr);
	tl_expect(get_x87_cw() == cw, "x87 control word %#x != %#x", get_x87_cw(), cw);
	tl_expect((get_x87_sw() & 0x3f) == sw, "x87 exception flags %#x != %#x",
		  get_x87_sw() & 0x3f, sw);
	tl_expect(fegetround() == FE_UPWARD, "rounding mode is %#x", fegetround());
	tl_expect(div_bits() == THIRD_UP, "1/3 no longer rounds up: %#llx",
		  (unsigned long long)div_bits());
	if (pku)
		tl_expect(rdpkru() == pkru, "pkru %#x != %#x", rdpkru(), pkru);
	tl_expect(arch_get(ARCH_GET_FS) == fs, "fs base %#lx != %#lx", arch_get(ARCH_GET_FS), fs);
	tl_expect(&tls_word == tls_addr && tls_word == 0x1234567887654321ull,
		  "TLS variable moved or changed");
	tl_expect(arch_get(ARCH_GET_GS) == gs, "gs base %#lx != %#lx", arch_get(ARCH_GET_GS), gs);
	tl_expect(read_gs0() == gs_area[0], "%%gs:0 reads %#llx, not %#llx",
		  (unsigned long long)read_gs0(), (unsigned long long)gs_area[0]);
	tl_done();
}
