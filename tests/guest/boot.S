/* Multiboot v1 entry: QEMU's -kernel loader starts us in 32-bit protected mode
 * with flat segments, EAX = bootloader magic, EBX = multiboot information. */
        .section .multiboot, "a"
        .align 4
        .long 0x1BADB002                 /* magic */
        .long 0x00000003                 /* page-align modules, give memory info */
        .long -(0x1BADB002 + 0x00000003) /* checksum */

        .text
        .globl _start
_start:
        cli
        mov $stack_top, %esp
        push %ebx
        push %eax
        call guest_main
1:      hlt
        jmp 1b

        .bss
        .align 16
        .skip 16384
stack_top:
        .section .note.GNU-stack, "", @progbits
