include $(sort $(wildcard $(BR2_EXTERNAL_PANTAVISOR_PATH)/package/*/*.mk))
