// SPDX-License-Identifier: GPL-2.0

#include <linux/uaccess.h>

__rust_helper unsigned long rust_helper_untagged_addr(unsigned long addr)
{
	return untagged_addr(addr);
}
