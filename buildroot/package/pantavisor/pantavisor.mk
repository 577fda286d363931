################################################################################
#
# pantavisor
#
################################################################################

# The release tarball made by buildroot/make-dist: the source with its crates
# already vendored (VENDOR/), so Buildroot's cargo download post-process keeps
# it as is and pantavisor.hash holds the hash of that very file.
PANTAVISOR_VERSION = 0.1.0
PANTAVISOR_SITE = $(BR2_EXTERNAL_PANTAVISOR_PATH)/dist
PANTAVISOR_SITE_METHOD = file
PANTAVISOR_LICENSE = MIT
PANTAVISOR_LICENSE_FILES = LICENSE

# Only the binary: the crate also has a library target and examples. Cargo
# features are the Config.in options', each passed by its own option.
PANTAVISOR_CARGO_BUILD_OPTS = --bin pantavisor --no-default-features
ifeq ($(BR2_PACKAGE_PANTAVISOR_HUB),y)
PANTAVISOR_CARGO_BUILD_OPTS += --features hub
endif
ifeq ($(BR2_PACKAGE_PANTAVISOR_PVS),y)
PANTAVISOR_CARGO_BUILD_OPTS += --features pvs
endif

ifeq ($(BR2_PACKAGE_PANTAVISOR_SIZE_PROFILE),y)
PANTAVISOR_CARGO_ENV = \
	CARGO_PROFILE_RELEASE_OPT_LEVEL=z \
	CARGO_PROFILE_RELEASE_LTO=fat \
	CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
endif

PANTAVISOR_STORAGE_DEVICE = $(call qstrip,$(BR2_PACKAGE_PANTAVISOR_STORAGE_DEVICE))
PANTAVISOR_STORAGE_FSTYPE = $(call qstrip,$(BR2_PACKAGE_PANTAVISOR_STORAGE_FSTYPE))

# Only the bootloaders pantavisor has a boot-env backend for (Config.in's choice).
ifeq ($(BR2_PACKAGE_PANTAVISOR_BOOTLOADER_UBOOT),y)
PANTAVISOR_BOOTLOADER_TYPE = uboot
endif
ifeq ($(BR2_PACKAGE_PANTAVISOR_BOOTLOADER_UBOOT_PVK),y)
PANTAVISOR_BOOTLOADER_TYPE = uboot-pvk
endif
ifeq ($(BR2_PACKAGE_PANTAVISOR_BOOTLOADER_GRUB),y)
PANTAVISOR_BOOTLOADER_TYPE = grub
endif

define PANTAVISOR_INSTALL_PVCONTROL
	ln -sf pantavisor $(TARGET_DIR)/usr/bin/pvcontrol
endef
PANTAVISOR_POST_INSTALL_TARGET_HOOKS += PANTAVISOR_INSTALL_PVCONTROL

ifeq ($(BR2_PACKAGE_PANTAVISOR_INIT),y)
define PANTAVISOR_INSTALL_INIT
	ln -sf usr/bin/pantavisor $(TARGET_DIR)/init
endef
PANTAVISOR_POST_INSTALL_TARGET_HOOKS += PANTAVISOR_INSTALL_INIT
endif

ifneq ($(PANTAVISOR_STORAGE_DEVICE),)
define PANTAVISOR_INSTALL_CONFIG
	mkdir -p $(TARGET_DIR)/etc $(TARGET_DIR)/storage
	printf '%s\n' \
		'PV_SYSTEM_INIT_MODE=embedded' \
		'PV_STORAGE_DEVICE=$(PANTAVISOR_STORAGE_DEVICE)' \
		'PV_STORAGE_FSTYPE=$(PANTAVISOR_STORAGE_FSTYPE)' \
		'PV_STORAGE_MNTPOINT=/storage' \
		'PV_BOOTLOADER_TYPE=$(PANTAVISOR_BOOTLOADER_TYPE)' \
		> $(TARGET_DIR)/etc/pantavisor.config
endef
PANTAVISOR_POST_INSTALL_TARGET_HOOKS += PANTAVISOR_INSTALL_CONFIG
endif

$(eval $(cargo-package))
