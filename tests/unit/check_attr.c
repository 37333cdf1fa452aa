/* Unit tests: attribute lists and the handle map. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "attr.h"
#include "handles.h"

START_TEST(test_set_get_sorted)
{
	ev_attrs *a = ev_attrs_new();
	CK_ULONG v = 0;
	size_t i;

	ck_assert_ptr_nonnull(a);
	ck_assert_int_eq(ev_attrs_set(a, CKA_LABEL, "abc", 3), CKR_OK);
	ck_assert_int_eq(ev_attrs_set_ulong(a, CKA_CLASS, CKO_DATA), CKR_OK);
	ck_assert_int_eq(ev_attrs_set_bool(a, CKA_TOKEN, CK_TRUE), CKR_OK);
	ck_assert_uint_eq(a->n, 3);
	for (i = 1; i < a->n; i++)
		ck_assert_uint_lt(a->v[i - 1].type, a->v[i].type);
	ck_assert_int_eq(ev_attrs_ulong(a, CKA_CLASS, &v), CKR_OK);
	ck_assert_uint_eq(v, CKO_DATA);
	ck_assert_int_eq(ev_attrs_is_true(a, CKA_TOKEN, 0), 1);
	ck_assert_int_eq(ev_attrs_is_true(a, CKA_PRIVATE, 1), 1);
	ck_assert_int_eq(ev_attrs_is_true(a, CKA_PRIVATE, 0), 0);
	ck_assert_int_eq(ev_attrs_ulong(a, CKA_KEY_TYPE, &v), EVR_NOT_FOUND);
	/* Wrong size for the type read. */
	ck_assert_int_eq(ev_attrs_ulong(a, CKA_LABEL, &v), CKR_ATTRIBUTE_VALUE_INVALID);
	/* Replace keeps one entry. */
	ck_assert_int_eq(ev_attrs_set(a, CKA_LABEL, "wxyz", 4), CKR_OK);
	ck_assert_uint_eq(a->n, 3);
	ck_assert_uint_eq(ev_attrs_get(a, CKA_LABEL)->ulValueLen, 4);
	ck_assert_mem_eq(ev_attrs_get(a, CKA_LABEL)->pValue, "wxyz", 4);
	ev_attrs_del(a, CKA_LABEL);
	ck_assert_ptr_null(ev_attrs_get(a, CKA_LABEL));
	ck_assert_uint_eq(a->n, 2);
	ev_attrs_free(a);
}
END_TEST

START_TEST(test_empty_value_and_defaults)
{
	ev_attrs *a = ev_attrs_new();

	ck_assert_int_eq(ev_attrs_set(a, CKA_ID, NULL, 0), CKR_OK);
	ck_assert_ptr_nonnull(ev_attrs_get(a, CKA_ID));
	ck_assert_uint_eq(ev_attrs_get(a, CKA_ID)->ulValueLen, 0);
	ck_assert_int_eq(ev_attrs_set(a, CKA_ID, NULL, 4), CKR_ATTRIBUTE_VALUE_INVALID);
	ck_assert_int_eq(ev_attrs_set_bool(a, CKA_SIGN, CK_FALSE), CKR_OK);
	ck_assert_int_eq(ev_attrs_default_bool(a, CKA_SIGN, CK_TRUE), CKR_OK);
	ck_assert_int_eq(ev_attrs_is_true(a, CKA_SIGN, 1), 0);
	ck_assert_int_eq(ev_attrs_default_bool(a, CKA_VERIFY, CK_TRUE), CKR_OK);
	ck_assert_int_eq(ev_attrs_is_true(a, CKA_VERIFY, 0), 1);
	ev_attrs_free(a);
}
END_TEST

START_TEST(test_from_template)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY, other = CKO_DATA;
	CK_BBOOL t = CK_TRUE;
	CK_ULONG big = 1;
	CK_ATTRIBUTE ok[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_TOKEN, &t, sizeof(t) },
		{ CKA_CLASS, &cls, sizeof(cls) }, /* repeated, same value: fine */
	};
	CK_ATTRIBUTE contradict[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_CLASS, &other, sizeof(other) },
	};
	CK_ATTRIBUTE badbool[] = { { CKA_TOKEN, &big, sizeof(big) } };
	CK_ATTRIBUTE badulong[] = { { CKA_CLASS, &t, sizeof(t) } };
	CK_ATTRIBUTE nullval[] = { { CKA_LABEL, NULL, 5 } };
	ev_attrs *a = NULL;

	ck_assert_int_eq(ev_attrs_from_template(ok, 3, &a), CKR_OK);
	ck_assert_uint_eq(a->n, 2);
	ck_assert_int_eq(ev_attrs_match(a, ok, 2), 1);
	ck_assert_int_eq(ev_attrs_match(a, contradict, 2), 0);
	ev_attrs_free(a);
	ck_assert_int_eq(ev_attrs_from_template(contradict, 2, &a), CKR_TEMPLATE_INCONSISTENT);
	ck_assert_ptr_null(a);
	ck_assert_int_eq(ev_attrs_from_template(badbool, 1, &a), CKR_ATTRIBUTE_VALUE_INVALID);
	ck_assert_int_eq(ev_attrs_from_template(badulong, 1, &a), CKR_ATTRIBUTE_VALUE_INVALID);
	ck_assert_int_eq(ev_attrs_from_template(nullval, 1, &a), CKR_ATTRIBUTE_VALUE_INVALID);
	ck_assert_int_eq(ev_attrs_from_template(NULL, 1, &a), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(ev_attrs_from_template(NULL, 0, &a), CKR_OK);
	ck_assert_uint_eq(a->n, 0);
	ev_attrs_free(a);
}
END_TEST

START_TEST(test_dup_is_deep)
{
	ev_attrs *a = ev_attrs_new(), *d;

	ck_assert_int_eq(ev_attrs_set(a, CKA_LABEL, "one", 3), CKR_OK);
	d = ev_attrs_dup(a);
	ck_assert_ptr_nonnull(d);
	ck_assert_int_eq(ev_attrs_set(a, CKA_LABEL, "two", 3), CKR_OK);
	ck_assert_mem_eq(ev_attrs_get(d, CKA_LABEL)->pValue, "one", 3);
	ev_attrs_free(a);
	ev_attrs_free(d);
	ev_attrs_free(NULL);
}
END_TEST

START_TEST(test_secret_types)
{
	ck_assert_int_eq(ev_attr_is_secret(CKO_SECRET_KEY, CKA_VALUE), 1);
	ck_assert_int_eq(ev_attr_is_secret(CKO_PRIVATE_KEY, CKA_VALUE), 1);
	ck_assert_int_eq(ev_attr_is_secret(CKO_PRIVATE_KEY, CKA_PRIME_1), 1);
	ck_assert_int_eq(ev_attr_is_secret(CKO_DATA, CKA_VALUE), 0);
	ck_assert_int_eq(ev_attr_is_secret(CKO_CERTIFICATE, CKA_VALUE), 0);
	ck_assert_int_eq(ev_attr_is_secret(CKO_PUBLIC_KEY, CKA_MODULUS), 0);
}
END_TEST

START_TEST(test_map)
{
	ev_map m = { 0 };
	CK_ULONG i;
	int vals[3];

	ck_assert_ptr_null(ev_map_get(&m, 5));
	ck_assert_int_eq(ev_map_put(&m, 0, &vals[0]), CKR_ARGUMENTS_BAD);
	/* Enough entries to grow several times, then delete half and look up the rest. */
	for (i = 1; i <= 5000; i++)
		ck_assert_int_eq(ev_map_put(&m, i * 7919, &vals[i % 3]), CKR_OK);
	ck_assert_uint_eq(m.live, 5000);
	for (i = 1; i <= 5000; i += 2)
		ck_assert_ptr_eq(ev_map_del(&m, i * 7919), &vals[i % 3]);
	ck_assert_uint_eq(m.live, 2500);
	for (i = 1; i <= 5000; i++) {
		if (i % 2)
			ck_assert_ptr_null(ev_map_get(&m, i * 7919));
		else
			ck_assert_ptr_eq(ev_map_get(&m, i * 7919), &vals[i % 3]);
	}
	/* Replacing keeps the count. */
	ck_assert_int_eq(ev_map_put(&m, 2 * 7919, &vals[0]), CKR_OK);
	ck_assert_uint_eq(m.live, 2500);
	ck_assert_ptr_null(ev_map_del(&m, 1));
	ev_map_clear(&m);
	ck_assert_ptr_null(ev_map_get(&m, 2 * 7919));
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("attr");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_set_get_sorted);
	tcase_add_test(tc, test_empty_value_and_defaults);
	tcase_add_test(tc, test_from_template);
	tcase_add_test(tc, test_dup_is_deep);
	tcase_add_test(tc, test_secret_types);
	tcase_add_test(tc, test_map);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
