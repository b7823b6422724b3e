/*
 * list.h — every test, once, in the order the runner runs them: unit tests
 * (no I/O beyond a temp dir) first, then integration tests that start the
 * real tokend and use libtokend and tokenctl.
 */
#define TEST_LIST(X)                                             \
    X(token_format_has_prefix_secret_checksum)                   \
    X(token_every_single_char_change_is_malformed)               \
    X(token_shape_rejections)                                    \
    X(token_prefix_rules)                                        \
    X(token_crc32_known_values)                                  \
    X(token_secret_is_uniform_base62)                            \
    X(token_random_exhaustion_fails_cleanly)                     \
    X(token_ids)                                                 \
    X(token_abilities_exact_and_wildcards)                       \
    X(token_reserved_abilities_need_exact_grant)                 \
    X(token_abilities_all_and_any)                               \
    X(token_pattern_within_caller)                               \
    X(token_expiry_rules)                                        \
    X(rpc_envelope_round_trip)                                   \
    X(rpc_methods_come_from_the_descriptor)                      \
    X(rpc_malformed_bytes_do_not_decode)                         \
    X(rpc_arena_caps_amplification)                              \
    X(rpc_utf8_validation)                                       \
    X(rpc_status_names_and_mapping)                              \
    X(store_open_creates)                                        \
    X(store_open_missing_fails)                                  \
    X(store_open_locked)                                         \
    X(store_open_read_only)                                      \
    X(store_put_get)                                             \
    X(store_get_missing)                                         \
    X(store_delete_removes_all)                                  \
    X(store_list_same_millisecond_follows_sequence)              \
    X(store_list_pages)                                          \
    X(store_list_cursor_after_delete)                            \
    X(store_list_owner_prefixes)                                 \
    X(store_list_bad_cursor)                                     \
    X(store_usage)                                               \
    X(store_batch_rules)                                         \
    X(store_initialised_survives_reopen)                         \
    X(store_data_survives_reopen)                                \
    X(store_owner_ids_all)                                       \
    X(store_concurrent_reads)                                    \
    X(store_codec_roundtrip)                                     \
    X(store_codec_truncated)                                     \
    X(store_codec_random_bytes)                                  \
    X(service_create_verify_revoke_flow)                         \
    X(service_checksum_change_is_malformed_unknown_is_not_found) \
    X(service_revoke_all_of_an_owner)                            \
    X(service_revoke_by_plain_token_needs_no_credential)         \
    X(service_list_pages_in_creation_order)                      \
    X(service_expiry)                                            \
    X(service_max_lifetime_caps_expiry)                          \
    X(service_restart_keeps_tokens_revocations_and_usage)        \
    X(service_usage_is_written_behind_while_running)             \
    X(service_kill9_after_acknowledged_create_and_revoke)        \
    X(service_cross_owner_attempts_are_refused)                  \
    X(service_credential_rights_and_expiry_cap)                  \
    X(service_rejects_invalid_fields)                            \
    X(service_survives_malformed_and_oversized_requests)         \
    X(service_no_plain_text_token_in_data_or_logs)               \
    X(service_concurrent_callers_share_one_client_and_many)      \
    X(service_init_twice_changes_nothing)                        \
    X(service_command_line_errors)                               \
    X(service_verify_can_require_a_credential)                   \
    X(service_unavailable_when_down)                             \
    X(cli_create_verify_list_revoke)                             \
    X(cli_json_output)                                           \
    X(cli_revoke_token_and_list_all_pages)                       \
    X(cli_refusals_and_usage_errors)                             \
    X(cli_unavailable_service_exits_3)
