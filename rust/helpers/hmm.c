// SPDX-License-Identifier: GPL-2.0

#include <linux/dma-mapping.h>
#include <linux/hmm.h>
#include <linux/swiotlb.h>
#include <linux/userfaultfd_k.h>

__rust_helper struct page *rust_helper_hmm_pfn_to_page(unsigned long hmm_pfn)
{
	return hmm_pfn_to_page(hmm_pfn);
}

__rust_helper bool rust_helper_userfaultfd_armed(struct vm_area_struct *vma)
{
	return userfaultfd_armed(vma);
}

__rust_helper int rust_helper_dma_mapping_error(struct device *dev,
						dma_addr_t dma_addr)
{
	return dma_mapping_error(dev, dma_addr);
}

__rust_helper int rust_helper_dma_coerce_mask_and_coherent(struct device *dev,
							   u64 mask)
{
	return dma_coerce_mask_and_coherent(dev, mask);
}

__rust_helper bool rust_helper_is_swiotlb_force_bounce(struct device *dev)
{
	return is_swiotlb_force_bounce(dev);
}
