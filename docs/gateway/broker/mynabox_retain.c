/*
 * mynabox_retain: a mosquitto 2.0 plugin that refuses retained publishes except a client's own
 * availability and state (mynabox/<user name>/availability, mynabox/<user name>/state).
 *
 * Why a plugin: mosquitto's acl_file decides by topic only, and retain_available false would take the
 * retained availability and state away too. A retained summary would otherwise sit in the broker's
 * memory and persistence file and be handed to every later subscriber of the topic.
 *
 * Every other decision is deferred to the acl_file (this callback runs before it), so a publish allowed
 * here still needs the ACL's write right. A refused retained publish gets PUBACK 0x87 (not authorized).
 *
 * Build (Debian 12: apt-get install mosquitto-dev gcc):
 *   cc -shared -fPIC -O2 -Wall -Wextra -o mynabox_retain.so mynabox_retain.c
 * and name the .so in mosquitto.conf with `plugin /path/to/mynabox_retain.so`.
 */
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

static mosquitto_plugin_id_t *plugin_id = NULL;

static const char PREFIX[] = "mynabox/";
static const char *const RETAINED_LEAVES[] = {"/availability", "/state"};

/* True when topic is exactly mynabox/<user>/<leaf> for one of the retained leaves. */
static bool own_retained_topic(const char *topic, const char *user)
{
	size_t prefix_len = sizeof(PREFIX) - 1;
	size_t user_len;
	size_t i;

	if(topic == NULL || user == NULL || user[0] == '\0') return false;
	if(strncmp(topic, PREFIX, prefix_len) != 0) return false;
	user_len = strlen(user);
	if(strncmp(topic + prefix_len, user, user_len) != 0) return false;
	for(i = 0; i < sizeof(RETAINED_LEAVES) / sizeof(RETAINED_LEAVES[0]); i++){
		if(strcmp(topic + prefix_len + user_len, RETAINED_LEAVES[i]) == 0) return true;
	}
	return false;
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;

	(void)event;
	(void)userdata;
	if(ed->access == MOSQ_ACL_WRITE && ed->retain
			&& !own_retained_topic(ed->topic, mosquitto_client_username(ed->client))){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "mynabox_retain: refused a retained publish from %s",
				mosquitto_client_id(ed->client));
		return MOSQ_ERR_ACL_DENIED;
	}
	return MOSQ_ERR_PLUGIN_DEFER;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	int i;

	for(i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5) return 5;
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
		struct mosquitto_opt *options, int option_count)
{
	(void)userdata;
	(void)options;
	(void)option_count;
	plugin_id = identifier;
	return mosquitto_callback_register(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, NULL);
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	(void)userdata;
	(void)options;
	(void)option_count;
	return mosquitto_callback_unregister(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
}
