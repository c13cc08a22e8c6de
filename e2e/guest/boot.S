/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Entry of the e2e guest: a multiboot (version 1) image that QEMU's
 * -kernel loads and enters in 32-bit protected mode with paging off and
 * interrupts disabled. Sets up a stack and calls guest_main().
 */
#define MB_MAGIC	0x1badb002
#define MB_FLAGS	0

	.section .multiboot, "a"
	.balign 4
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)

	.text
	.globl _start
_start:
	cli
	movl $stack_top, %esp
	call guest_main
1:	cli
	hlt
	jmp 1b

	.bss
	.balign 16
	.space 65536
stack_top:

	.section .note.GNU-stack, "", @progbits
