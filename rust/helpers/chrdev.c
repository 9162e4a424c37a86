// SPDX-License-Identifier: GPL-2.0

#include <linux/fs.h>

/*
 * i_cdev sits in an anonymous union of struct inode, whose name in the
 * bindings depends on the configuration.
 */
__rust_helper struct cdev *rust_helper_inode_cdev(const struct inode *inode)
{
	return inode->i_cdev;
}
