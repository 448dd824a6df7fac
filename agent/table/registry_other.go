//go:build !linux

package table

// registry lists the tables whose implementation does not depend on Linux;
// other platforms get only these until their own implementations exist.
func registry() []*tableDef {
	return []*tableDef{
		authorizedKeysTable,
		crontabTable,
		dnsResolversTable,
		etcHostsTable,
		etcProtocolsTable,
		etcServicesTable,
		fileEventsTable,
		groupsTable,
		hashTable,
		knownHostsTable,
		osqueryEventsTable,
		osquerySchedule,
		osqueryInfoTable,
		processEventsTable,
		shellHistoryTable,
		socketEventsTable,
		sudoersTable,
		timeTable,
		userEventsTable,
		userGroupsTable,
		usersTable,
		vigilEventDropsTable,
	}
}
