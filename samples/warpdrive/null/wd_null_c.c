// SPDX-License-Identifier: GPL-2.0
/*
 * wd_null_c: the cheapest ioctl a C driver can offer, for the benchmark
 * (samples/warpdrive/bench/wd_bench.c) to compare warpdrive's Rust ioctl
 * path against. /dev/wd_null_c answers every ioctl with 0 and touches
 * nothing, so what the benchmark measures on it is the system call and the
 * VFS and misc device dispatch, which every character device pays.
 */

#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>

static long wd_null_c_ioctl(struct file *file, unsigned int cmd,
			    unsigned long arg)
{
	return 0;
}

static const struct file_operations wd_null_c_fops = {
	.owner		= THIS_MODULE,
	.unlocked_ioctl	= wd_null_c_ioctl,
	.llseek		= noop_llseek,
};

static struct miscdevice wd_null_c_dev = {
	.minor	= MISC_DYNAMIC_MINOR,
	.name	= "wd_null_c",
	.fops	= &wd_null_c_fops,
};

module_misc_device(wd_null_c_dev);

MODULE_DESCRIPTION("warpdrive benchmark: a C misc device with a null ioctl");
MODULE_LICENSE("GPL");
